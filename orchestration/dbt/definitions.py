"""The dbt slice's assets, jobs, schedules and sensors (resources are bound in orchestration/definitions.py)."""

import dagster as dg

from orchestration.dbt.assets import dbt_models
from orchestration.environment import Environment


def slice_definitions(env: Environment) -> dg.Definitions:
    return dg.Definitions(assets=[dbt_models])
