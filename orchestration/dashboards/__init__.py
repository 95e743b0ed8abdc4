"""The dashboards builder (`elt dashboards build/dev`) over the Evidence project in `dashboards/`: query checks and
the site build. No Dagster definitions live here."""
