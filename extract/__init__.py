"""Thin extractors with no Dagster import: dlt sources, the Sling replication, and the demo sources."""

from extract.tooling import configure_offline_tools

configure_offline_tools()
