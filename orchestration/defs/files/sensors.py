"""The drop sensor: registers new files as partitions and requests one run per new or changed file.

The cursor holds `{file name: version}` of files requested and not yet loaded, so a file is requested once per
content (a failing file again only when it changes), and it lives in the Dagster instance, so it survives restarts.
Each tick requests at most `max_runs_per_tick` files, oldest first: a first start over thousands of files queues
them in bounded batches. Run keys (`<file>@<version>`) make a repeated request a no-op even without the cursor.
"""

import json

import dagster as dg

from orchestration.defs.files.jobs import FILES_LOAD_JOB
from orchestration.defs.files.partitions import pending_drops
from orchestration.defs.files.resources import ShareDropsResource
from orchestration.lib.automation import default_sensor_status
from orchestration.lib.environment import resolve

MAX_RUNS_PER_TICK = 100


def build_drops_sensor(
    job_name: str,
    default_status: dg.DefaultSensorStatus,
    max_runs_per_tick: int = MAX_RUNS_PER_TICK,
    minimum_interval_seconds: int = 60,
) -> dg.SensorDefinition:
    @dg.sensor(
        name="share_price_drops_sensor",
        job_name=job_name,
        default_status=default_status,
        minimum_interval_seconds=minimum_interval_seconds,
        description=f"Scans the share-price drop location; one run per new or changed file, at most "
        f"{max_runs_per_tick} per tick.",
    )
    def share_price_drops_sensor(context: dg.SensorEvaluationContext, share_drops: ShareDropsResource):
        requested: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        pending = pending_drops(context.instance, share_drops.location)
        in_flight = {drop.name: drop.version for drop in pending if requested.get(drop.name) == drop.version}
        batch = [drop for drop in pending if drop.name not in in_flight][:max_runs_per_tick]
        waiting = len(pending) - len(in_flight) - len(batch)
        if waiting:
            context.log.info(f"{waiting} more new or changed file(s) wait for the next tick")
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=f"{drop.name}@{drop.version}",
                    partition_key=drop.name,
                    tags={"share_price_file": drop.name},
                )
                for drop in batch
            ],
            cursor=json.dumps({**in_flight, **{drop.name: drop.version for drop in batch}}, sort_keys=True),
        )

    return share_price_drops_sensor


@dg.definitions
def sensors() -> dg.Definitions:
    """The drop sensor, running by default in prod only."""
    return dg.Definitions(sensors=[build_drops_sensor(FILES_LOAD_JOB, default_sensor_status(resolve()))])
