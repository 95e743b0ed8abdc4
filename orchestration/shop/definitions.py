"""The shop slice's assets, jobs, schedules and sensors (resources are bound in orchestration/definitions.py)."""

import dagster as dg

from orchestration.environment import Environment
from orchestration.shop.assets import shop_assets


def slice_definitions(env: Environment) -> dg.Definitions:
    return dg.Definitions(assets=[shop_assets])
