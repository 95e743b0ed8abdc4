"""The branch slice in Dagster: jobs to create, build and drop a PR's clone, and to sweep leftovers.

The ops take prod's location from the `warehouse` resource, so they run in any deployment that knows
ELT_PROD_DATABASE. Materializing the usual assets in a branch deployment needs nothing from here: the environment
resolves the clone as the warehouse, and every writer refuses prod.
"""

from datetime import timedelta

import dagster as dg

from orchestration.branch.build import build_branch, repoint_views
from orchestration.branch.clones import DEFAULT_MAX_AGE_DAYS, clone_store, sweep
from orchestration.lib.asset_keys import WAREHOUSE_POOL
from orchestration.lib.environment import branch_of
from orchestration.lib.warehouse import WarehouseResource

SWEEP_JOB = "branch_sweep"


class BranchConfig(dg.Config):
    branch_id: str


class SweepConfig(dg.Config):
    max_age_days: int = DEFAULT_MAX_AGE_DAYS
    open_branch_ids: list[str] | None = None  # None: only age decides


@dg.op(pool=WAREHOUSE_POOL)  # under the pool: the copy of a prod file never overlaps a prod run of this instance
def create_branch_clone(context: dg.OpExecutionContext, config: BranchConfig, warehouse: WarehouseResource) -> None:
    env = branch_of(warehouse.environment, config.branch_id)
    clone = clone_store(env).create(config.branch_id)
    views = repoint_views(env)
    context.add_output_metadata({"clone": clone.location, "views_recreated": views.statuses.get("success", 0)})
    if not views.ok:
        raise dg.Failure(
            f"clone {clone.location} made, but recreating its views failed", metadata={"dbt": views.command}
        )


@dg.op(pool=WAREHOUSE_POOL)
def build_branch_clone(context: dg.OpExecutionContext, config: BranchConfig, warehouse: WarehouseResource) -> None:
    env = branch_of(warehouse.environment, config.branch_id)
    result, state = build_branch(env)
    context.add_output_metadata(
        {"clone": env.warehouse, "selection": "state:modified+" if state else "everything", **result.statuses}
    )
    if not result.ok:
        raise dg.Failure(f"dbt build in {env.warehouse} failed: {', '.join(result.failed) or 'see the log'}")


@dg.op
def drop_branch_clone(context: dg.OpExecutionContext, config: BranchConfig, warehouse: WarehouseResource) -> None:
    env = branch_of(warehouse.environment, config.branch_id)
    context.add_output_metadata({"clone": env.warehouse, "dropped": clone_store(env).drop(config.branch_id)})


@dg.op
def sweep_branch_clones(context: dg.OpExecutionContext, config: SweepConfig, warehouse: WarehouseResource) -> None:
    open_ids = None if config.open_branch_ids is None else set(config.open_branch_ids)
    decisions = sweep(warehouse.environment, open_ids, timedelta(days=config.max_age_days))
    for decision in decisions:
        context.log.info(f"{'dropped' if decision.drop else 'kept'} {decision.clone.location}: {decision.reason}")
    context.add_output_metadata(
        {
            "dropped": [d.clone.location for d in decisions if d.drop],
            "kept": [d.clone.location for d in decisions if not d.drop],
        }
    )


@dg.job(description="Clone prod for a pull request (config: branch_id).")
def branch_create():
    create_branch_clone()


@dg.job(description="dbt build of what a PR changed, in its clone (config: branch_id).")
def branch_build():
    build_branch_clone()


@dg.job(description="Drop a pull request's clone (config: branch_id).")
def branch_drop():
    drop_branch_clone()


@dg.job(name=SWEEP_JOB, description="Drop clones older than max_age_days, or whose PR is not in open_branch_ids.")
def branch_sweep():
    sweep_branch_clones()
