"""Keys dlt assets by where their table lands (`[dataset, table]`), with no upstream placeholder assets."""

from __future__ import annotations

import dagster as dg
from dagster_dlt import DagsterDltTranslator
from dagster_dlt.translator import DltResourceTranslatorData

from orchestration.lib.asset_keys import table_asset_key


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
