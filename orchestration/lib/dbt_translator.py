"""The dbt translator: every dbt node is keyed by where it lands, `[schema, table]`.

A dbt source lands where its extractor wrote it, so `source('shop', 'orders')` (schema `raw_shop`, table `orders`)
gets the key `raw_shop/orders`: the key of the Sling asset that loads it. Lineage runs unbroken from the extract
assets through staging to the marts, and tests on sources report as asset checks on the extract assets.
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings

from orchestration.lib.asset_keys import raw_table_asset_key, table_asset_key


class WarehouseDbtTranslator(DagsterDbtTranslator):
    def __init__(self) -> None:
        super().__init__(
            settings=DagsterDbtTranslatorSettings(
                enable_asset_checks=True,
                enable_source_tests_as_checks=True,
                enable_duplicate_source_asset_keys=True,  # a dlt parent and child table share one asset
            )
        )

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            table = dbt_resource_props.get("identifier") or dbt_resource_props["name"]
            return raw_table_asset_key(dbt_resource_props["schema"], table)
        table = dbt_resource_props.get("alias") or dbt_resource_props["name"]
        return table_asset_key(dbt_resource_props["schema"], table)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "source":
            return None  # sources belong to the extract asset's group
        fqn = dbt_resource_props.get("fqn", [])
        return f"dbt_{fqn[1]}" if len(fqn) > 2 else "dbt"
