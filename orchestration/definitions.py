"""The only module that knows every slice: it composes them into one asset graph for the resolved environment.

`dagster dev` / `elt dev` load `defs`; tests and the `elt` CLI call `build_definitions()` with their own
environment (a temp warehouse, a local PostgreSQL, the replay server).
"""

import dagster as dg
from dagster_dlt import DagsterDltResource

from orchestration.branch import definitions as branch_slice
from orchestration.dbt import definitions as dbt_slice
from orchestration.dbt.assets import WarehouseDbtCliResource, dbt_models
from orchestration.dbt.project import dbt_project
from orchestration.environment import Environment, SourceSettings, resolve, source_settings
from orchestration.files import definitions as files_slice
from orchestration.files.assets import ShareDropsResource
from orchestration.lib.automation import default_schedule_status
from orchestration.lib.warehouse import WarehouseResource
from orchestration.nasa import definitions as nasa_slice
from orchestration.nasa.assets import NasaApiResource
from orchestration.shop import definitions as shop_slice
from orchestration.shop.assets import ShopPostgresResource

ALL_ASSETS_JOB = "elt_all"
TRANSFORM_JOB = "dbt_build"


def build_definitions(env: Environment, sources: SourceSettings) -> dg.Definitions:
    partitioned = dg.AssetSelection.groups("files", "nasa")
    # every unpartitioned asset (the shop tables and the dbt models): `elt run` runs it after the partitioned loads
    all_assets = dg.define_asset_job(
        ALL_ASSETS_JOB,
        selection=dg.AssetSelection.all(include_sources=False) - partitioned,
        description="The shop replication and dbt build; `elt run` runs it after the file and NeoWs loads.",
    )
    transform = dg.define_asset_job(
        TRANSFORM_JOB,
        selection=dg.AssetSelection.assets(dbt_models),
        description="`dbt build` of every model and test, on what the extract assets loaded.",
    )
    transform_schedule = dg.ScheduleDefinition(
        name=f"{TRANSFORM_JOB}_schedule",
        job=transform,
        cron_schedule="30 6,12,18 * * *",  # half an hour after the 06:00 loads and the 12:00 / 18:00 orders loads
        execution_timezone="UTC",
        default_status=default_schedule_status(env),
    )
    platform = dg.Definitions(
        jobs=[all_assets, transform],
        schedules=[transform_schedule],
        resources={
            "warehouse": WarehouseResource.from_environment(env),
            "dlt": DagsterDltResource(),
            "share_drops": ShareDropsResource(location=sources.files_drop_location),
            "nasa_api": NasaApiResource(
                api_key=dg.EnvVar(sources.nasa_api_key_env) if sources.nasa_api_key_env else None,
                base_url=sources.nasa_base_url,
            ),
            "shop_postgres": ShopPostgresResource(
                url=dg.EnvVar("ELT_SHOP_POSTGRES_URL") if sources.shop_postgres_url else None
            ),
            "dbt": WarehouseDbtCliResource(
                project_dir=dbt_project, target=env.dbt_target, env_vars=env.env_for_subprocess()
            ),
        },
    )
    slices = [files_slice.slice_definitions(env), nasa_slice.slice_definitions(env, sources)]
    slices += [module.slice_definitions(env) for module in (shop_slice, dbt_slice, branch_slice)]
    return dg.Definitions.merge(*slices, platform)


defs = build_definitions(resolve(), source_settings())
