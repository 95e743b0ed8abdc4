"""Dagster orchestration of the extractors and dbt. Importing `extract` first points Sling, dbt and dlt at the
bundled offline tools and turns telemetry off, before any of them is imported."""

import extract  # noqa: F401
