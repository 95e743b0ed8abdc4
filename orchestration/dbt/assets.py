"""The dbt slice: every model, seed and test in `dbt_project/` as assets and asset checks."""

import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets

from orchestration.branch.build import publish_prod_state
from orchestration.dbt.project import dbt_project, ensure_manifest
from orchestration.lib.asset_keys import WAREHOUSE_POOL
from orchestration.lib.dbt_translator import WarehouseDbtTranslator
from orchestration.lib.warehouse import WarehouseResource

KEEP_RUN_TARGETS = 5  # dagster-dbt writes target/<op>-<id>/ per run; older ones are pruned


@contextmanager
def _environ(extra: Mapping[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class WarehouseDbtCliResource(DbtCliResource):
    """dbt, run against the resolved environment: the variables profiles.yml reads are passed to the process."""

    env_vars: dict[str, str] = {}

    def cli(self, args, **kwargs):
        with _environ(self.env_vars):  # dagster-dbt builds the subprocess env from os.environ inside cli()
            return super().cli(args, **kwargs)


def prune_run_targets(keep: int = KEEP_RUN_TARGETS) -> None:
    runs = sorted(
        (path for path in dbt_project.target_path.glob("*-*") if path.is_dir()),
        key=lambda path: path.stat().st_mtime,
    )
    for path in runs[:-keep]:
        shutil.rmtree(path, ignore_errors=True)


@dbt_assets(
    manifest=ensure_manifest(),
    project=dbt_project,
    dagster_dbt_translator=WarehouseDbtTranslator(),
    pool=WAREHOUSE_POOL,
)
def dbt_models(context: dg.AssetExecutionContext, dbt: WarehouseDbtCliResource, warehouse: WarehouseResource):
    """`dbt build` of the selected models: tests run beside them and a failing test stops what is downstream.

    In prod, the manifest is then published into the warehouse: every PR branch cloned from it compares against it.
    """
    # no .fetch_row_counts(): it keeps a dbt-duckdb connection to the warehouse open in this process after the run
    invocation = dbt.cli(["build"], context=context)
    yield from invocation.stream()
    if warehouse.env_name == "prod" and invocation.is_successful():
        publish_prod_state(warehouse.environment, invocation.target_path / "manifest.json")
    prune_run_targets()
