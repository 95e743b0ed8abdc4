"""The dbt slice: every model, seed and test in `dbt_project/` as assets and asset checks, and the dbt build job."""
