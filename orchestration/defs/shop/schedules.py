"""When the shop tables load: every table at 06:00 UTC, orders (and deletions) again at 12:00 and 18:00 UTC.

The dbt models downstream build when a load lands new rows (declarative automation, defs/dbt/schedules.py).
Both jobs run without the dbt source tests on raw_shop (asset checks run by the dbt op): those run with `dbt build`.
"""

import dagster as dg

from orchestration.defs.shop.assets import RAW_SCHEMA, shop_assets
from orchestration.lib.asset_keys import table_asset_key
from orchestration.lib.automation import default_schedule_status
from orchestration.lib.environment import resolve

SHOP_DAILY_JOB = "shop_daily"
SHOP_ORDERS_JOB = "shop_orders"

shop_daily = dg.define_asset_job(
    SHOP_DAILY_JOB,
    selection=dg.AssetSelection.assets(shop_assets).without_checks(),
    description="Replicate every shop table into raw_shop, each incrementally on updated_at, and the deletions.",
)
shop_orders = dg.define_asset_job(
    SHOP_ORDERS_JOB,
    selection=dg.AssetSelection.assets(
        table_asset_key(RAW_SCHEMA, "orders"), table_asset_key(RAW_SCHEMA, "deletions")
    ).without_checks(),
    description="Replicate the orders added, changed or deleted since the last load into raw_shop.orders and "
    "raw_shop.deletions.",
)


@dg.definitions
def schedules() -> dg.Definitions:
    """Both schedules run by default in prod only."""
    env = resolve()
    schedules = [
        dg.ScheduleDefinition(
            name=f"{SHOP_DAILY_JOB}_schedule",
            job=shop_daily,
            cron_schedule="0 6 * * *",
            execution_timezone="UTC",
            default_status=default_schedule_status(env),
        ),
        dg.ScheduleDefinition(
            name=f"{SHOP_ORDERS_JOB}_intraday_schedule",
            job=shop_orders,
            cron_schedule="0 12,18 * * *",  # the 06:00 load is shop_daily's
            execution_timezone="UTC",
            default_status=default_schedule_status(env),
        ),
    ]
    return dg.Definitions(jobs=[shop_daily, shop_orders], schedules=schedules)
