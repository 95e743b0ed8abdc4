"""The shop slice's assets, jobs, schedules and sensors (resources are bound in orchestration/definitions.py)."""

import dagster as dg

from orchestration.environment import Environment
from orchestration.shop.assets import shop_assets
from orchestration.shop.schedules import build_shop_schedules, shop_daily, shop_orders


def slice_definitions(env: Environment) -> dg.Definitions:
    return dg.Definitions(assets=[shop_assets], jobs=[shop_daily, shop_orders], schedules=build_shop_schedules(env))
