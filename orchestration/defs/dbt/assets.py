"""The dbt slice's assets: every model, seed and test in `dbt_project/`, keyed by where it lands.

A Python `@dbt_assets` rather than dagster-dbt's `DbtProjectComponent`: the op binds the warehouse resource (the
prod-write guard and the environment's target), and after a prod build publishes the manifest into the warehouse,
where every PR clone finds the state it is compared against. The component's state-backed manifest refresh would
also add a second place that prepares the manifest; here `ensure_manifest()` does it, once, when it is stale.
"""

import dagster as dg
from dagster_dbt import dbt_assets

from orchestration.lib.asset_keys import WAREHOUSE_POOL
from orchestration.lib.dbt import WarehouseDbtCliResource, dbt_project, ensure_manifest, prune_run_targets
from orchestration.lib.dbt_translator import WarehouseDbtTranslator
from orchestration.lib.meta import publish_prod_state
from orchestration.lib.warehouse import WarehouseResource


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
