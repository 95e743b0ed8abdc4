"""The CSV drops slice's assets, jobs, schedules and sensors (resources are bound in orchestration/definitions.py)."""

import dagster as dg

from orchestration.environment import Environment
from orchestration.files.assets import files_assets
from orchestration.files.sensors import build_drops_sensor
from orchestration.lib.automation import default_sensor_status

FILES_LOAD_JOB = "files_load"

files_load = dg.define_asset_job(
    FILES_LOAD_JOB,
    selection=dg.AssetSelection.assets(files_assets),
    description="Check and load share-price files into raw_files.share_prices: one partition per file; a run may "
    "cover a range of files (single-run backfill).",
)


def slice_definitions(env: Environment) -> dg.Definitions:
    return dg.Definitions(
        assets=[files_assets],
        jobs=[files_load],
        sensors=[build_drops_sensor(FILES_LOAD_JOB, default_sensor_status(env))],
    )
