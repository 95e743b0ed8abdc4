"""Keys dlt assets by where their table lands (`[dataset, table]`), with no upstream placeholder assets, and
reports that table in the materialization metadata."""

from __future__ import annotations

import dagster as dg
import dlt
from dagster_dlt import DagsterDltTranslator
from dagster_dlt.translator import DltResourceTranslatorData
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from orchestration.lib.asset_keys import table_asset_key
from orchestration.lib.warehouse import table_metadata


class RawTableDltTranslator(DagsterDltTranslator):
    def __init__(self, dataset_name: str, group_name: str):
        self.dataset_name = dataset_name
        self.group_name = group_name

    def get_asset_spec(self, data: DltResourceTranslatorData) -> dg.AssetSpec:
        table = data.resource.table_name
        table = table if isinstance(table, str) else data.resource.name
        return (
            super()
            .get_asset_spec(data)
            .replace_attributes(
                key=table_asset_key(self.dataset_name, table),
                deps=[],
                group_name=self.group_name,
                kinds={"dlt", "duckdb"},
            )
        )


def landed_table_metadata(pipeline: dlt.Pipeline, asset_key: dg.AssetKey) -> dict[str, dg.MetadataValue]:
    """The table a dlt asset wrote, as a user finds it: `dagster/table_name` is `<dataset>.<table>` (dagster-dlt
    says `<destination>.<dlt schema>.<table>`, e.g. `duckdb.neows.asteroids`), its rows now and its columns."""
    table = asset_key.path[-1]
    name = f"{pipeline.dataset_name}.{table}"
    with pipeline.sql_client() as client:
        try:
            return table_metadata(
                client.execute_sql,
                client.make_qualified_table_name(table),
                name=name,
                motherduck=pipeline.destination.destination_name == "motherduck",
            )
        except DatabaseUndefinedRelation:  # nothing was ever loaded: dlt creates a table with its first rows
            return {"dagster/table_name": dg.MetadataValue.text(name), "dagster/row_count": dg.MetadataValue.int(0)}
