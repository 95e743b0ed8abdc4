"""Dagster definitions, autoloaded by dg from this folder: one folder per slice (a source, dbt, branch ...), each
binding its own assets, resources, partitions, schedules and sensors. Nothing lists the slices: add a folder."""
