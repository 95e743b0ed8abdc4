"""The dbt translator: every dbt node is keyed by where it lands, `[schema, table]`.

A dbt source lands where its extractor wrote it, so `source('x', 't')` (schema `raw_x`, table `t`) gets the key
`raw_x/t`: the key of the dlt or Sling asset that loads it. Lineage runs unbroken from the extract
assets through staging to the marts, and tests on sources report as asset checks on the extract assets.

When models run is data-driven (`get_automation_condition`, see orchestration/lib/automation.py): a model
materializes when what it reads has new data. A mart carries a freshness policy taken from the dbt `freshness:` of
the sources it reads, so the UI shows a mart gone stale.

The manifest is parsed once, without a warehouse (`ensure_manifest`), so the database it records is no
environment's. Table names (`dagster/table_name`) take the resolved environment's database instead:
`prod.marts.<model>` in prod, `<branch id>.marts...` in a branch, from the same manifest.
"""

from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings

from orchestration.lib import motherduck
from orchestration.lib.asset_keys import raw_table_asset_key, table_asset_key
from orchestration.lib.automation import model_automation_condition, upstream_freshness_policy
from orchestration.lib.environment import Environment, resolve

MARTS_SCHEMA = "marts"


def warehouse_database(env: Environment) -> str:
    """The database (DuckDB catalog) name of `env`'s warehouse in dbt's relations: `md:<name>` -> `<name>`, a
    DuckDB file -> its name without the extension (`/data/prod.duckdb` -> `prod`), as DuckDB names an opened file."""
    return motherduck.database_name(env.warehouse) if env.is_motherduck else Path(env.warehouse).stem


class WarehouseDbtTranslator(DagsterDbtTranslator):
    """`environment`: whose database the table names carry; by default the one the process resolves, when the
    definitions load."""

    def __init__(self, environment: Environment | None = None) -> None:
        self._environment = environment
        super().__init__(
            settings=DagsterDbtTranslatorSettings(
                enable_asset_checks=True,
                enable_source_tests_as_checks=True,
                enable_duplicate_source_asset_keys=True,  # a dlt parent and child table share one asset
            )
        )

    @cached_property
    def database(self) -> str:
        return warehouse_database(self._environment or resolve())

    def relation_name(self, dbt_resource_props: Mapping[str, Any]) -> str:
        """`<database>.<schema>.<table>` of a node in this environment's warehouse."""
        table = dbt_resource_props.get("identifier") or dbt_resource_props.get("alias") or dbt_resource_props["name"]
        return f"{self.database}.{dbt_resource_props['schema']}.{table}"

    def get_metadata(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, Any]:
        metadata = dict(super().get_metadata(dbt_resource_props))
        if "dagster/table_name" in metadata:  # dagster-dbt names it from the manifest's database
            metadata["dagster/table_name"] = self.relation_name(dbt_resource_props)
        return metadata

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

    def get_automation_condition(self, dbt_resource_props: Mapping[str, Any]) -> dg.AutomationCondition | None:
        if dbt_resource_props["resource_type"] not in ("model", "seed", "snapshot"):
            return None
        return model_automation_condition()

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project: Any) -> dg.AssetSpec:
        """dagster-dbt's spec, plus a freshness policy on each mart (dagster-dbt sets none)."""
        spec = super().get_asset_spec(manifest, unique_id, project)
        props = manifest["nodes"].get(unique_id)
        if props is None or props["resource_type"] != "model" or props.get("schema") != MARTS_SCHEMA:
            return spec
        policy = upstream_freshness_policy(manifest, unique_id)
        return spec.replace_attributes(freshness_policy=policy) if policy else spec
