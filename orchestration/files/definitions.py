"""The CSV drops slice's assets, jobs, schedules and sensors (resources are bound in orchestration/definitions.py)."""

import dagster as dg

from orchestration.environment import Environment
from orchestration.files.assets import files_assets


def slice_definitions(env: Environment) -> dg.Definitions:
    return dg.Definitions(assets=[files_assets])
