"""The dbt slice's assets: every model, seed and test in `dbt_project/`, keyed by where it lands, and in prod the
publish step of Write-Audit-Publish (orchestration/lib/publish.py).

A Python `@dbt_assets` rather than dagster-dbt's `DbtProjectComponent`: the op binds the warehouse resource (the
prod-write guard and the environment's target) and, in prod, builds into the audit slots. The component's
state-backed manifest refresh would also add a second place that prepares the manifest; here `ensure_manifest()`
does it, once, when it is stale.

Nothing is resolved at import: `dbt_assets_for()` builds the assets from the manifest and the environment when the
definitions load (the `@dg.definitions` function below), so one process can load them for dev and then for prod.
"""

import json
from pathlib import Path

import dagster as dg
from dagster_dbt import dbt_assets

from orchestration.lib import publish
from orchestration.lib.asset_keys import WAREHOUSE_POOL
from orchestration.lib.dbt import WarehouseDbtCliResource, dbt_project, ensure_manifest, prune_run_targets
from orchestration.lib.dbt_translator import WarehouseDbtTranslator
from orchestration.lib.environment import Environment, resolve
from orchestration.lib.meta import META_SCHEMA
from orchestration.lib.warehouse import WarehouseResource


def _selected_models(context: dg.AssetExecutionContext, manifest: dict, translator: WarehouseDbtTranslator) -> set[str]:
    return {
        node["name"]
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and translator.get_asset_key(node) in context.selected_asset_keys
    }


def build_dbt_models(manifest_path: Path, translator: WarehouseDbtTranslator) -> dg.AssetsDefinition:
    """Every model, seed and test in the manifest as one multi-asset whose op runs `dbt build`."""

    @dbt_assets(manifest=manifest_path, project=dbt_project, dagster_dbt_translator=translator, pool=WAREHOUSE_POOL)
    def dbt_models(context: dg.AssetExecutionContext, dbt: WarehouseDbtCliResource, warehouse: WarehouseResource):
        """`dbt build` of the selected models: tests run beside them and a failing test stops what is downstream.

        In prod this is the build + audit of Write-Audit-Publish: the models land in their audit slots, readers keep
        the published ones, and only a build whose every test passed is recorded for `elt_meta/wap_publishes`.
        """
        # no .fetch_row_counts(): it keeps a dbt-duckdb connection to the warehouse open in this process after the run
        if warehouse.env_name != "prod":
            yield from dbt.cli(["build"], context=context).stream()
            prune_run_targets()
            return
        manifest = json.loads(manifest_path.read_text())
        models = publish.manifest_models(manifest)
        selected = _selected_models(context, manifest, translator)
        with warehouse.connect() as con:
            slots = publish.start_audit(con, models, selected)
        invocation = dbt.cli(
            ["build", "--vars", json.dumps({"wap_slots": slots})], context=context, raise_on_error=False
        )
        yield from invocation.stream()
        if not invocation.is_successful():
            failures = publish.audit_failures(
                invocation.get_artifact("run_results.json"), invocation.get_artifact("manifest.json")
            )
            prune_run_targets()
            raise dg.Failure(
                description="the audit failed, nothing is published (readers keep the previous tables; the audited "
                "ones stay queryable in their `<schema>__slot_<x>` schemas):\n" + "\n".join(failures or ["dbt failed"]),
                metadata={"failures": dg.MetadataValue.md("\n".join(f"- {line}" for line in failures))},
            )
        built = [model for model in models if model.name in selected]
        with warehouse.connect() as con:
            publish.record_audit(
                con, built, slots, (invocation.target_path / "manifest.json").read_text(), context.run.run_id
            )
        prune_run_targets()

    return dbt_models


# the publish step waits for its dbt models and runs after them, in the same run or on its own (automation)
PUBLISH_CONDITION = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("after the dbt models it publishes")


def build_dbt_publish(models: dg.AssetsDefinition) -> dg.AssetsDefinition:
    """The publish step of Write-Audit-Publish, downstream of every model in `models`."""

    @dg.asset(
        key=[META_SCHEMA, publish.LOG_TABLE],
        deps=list(models.keys),
        pool=WAREHOUSE_POOL,
        group_name="dbt",
        kinds={"duckdb"},
        automation_condition=PUBLISH_CONDITION,
    )
    def dbt_publish(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        """Publish of Write-Audit-Publish, prod only: every model whose audit passed becomes what readers see, in one
        transaction. Skipped when the build + audit step fails; a no-op in dev and branch, which build in place."""
        if warehouse.env_name != "prod":
            return dg.MaterializeResult(metadata={"published": f"nothing: {warehouse.env_name} builds in place"})
        with warehouse.connect() as con:
            result = publish.publish(con, context.run.run_id)
        if result.publish_id is None:
            context.log.info("no audited models wait for publish")
            return dg.MaterializeResult(metadata={"published": 0})
        return dg.MaterializeResult(
            metadata={"publish_id": result.publish_id, "published": len(result.models), "models": result.models}
        )

    return dbt_publish


def dbt_assets_for(environment: Environment | None = None) -> tuple[dg.AssetsDefinition, dg.AssetsDefinition]:
    """The dbt models and the publish step, built from the manifest (prepared when stale). Table names carry
    `environment`'s database; by default the one this process resolves."""
    models = build_dbt_models(ensure_manifest(), WarehouseDbtTranslator(environment))
    return models, build_dbt_publish(models)


TRANSFORM_JOB = "dbt_build"


@dg.definitions
def assets() -> dg.Definitions:
    """The dbt assets for the environment the process resolves now, and `dbt_build`, the full build by hand."""
    models, publish_step = dbt_assets_for(resolve())
    dbt_build = dg.define_asset_job(
        TRANSFORM_JOB,
        # and the dbt source tests: asset checks on the extract assets (raw_*), which the load jobs leave to this one
        selection=dg.AssetSelection.assets(models) | dg.AssetSelection.checks(*models.check_keys),
        description="`dbt build` of every model and test, on what the extract assets loaded (by hand; the models "
        "otherwise run when their inputs change).",
    )
    return dg.Definitions(assets=[models, publish_step], jobs=[dbt_build])
