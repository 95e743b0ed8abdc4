"""The drop sensor: registers new files as partitions and requests one run per new or changed file.

The cursor holds `{file name: version}` of files requested and not yet loaded, so a file is requested once per
content (a failing file again only when it changes), and it lives in the Dagster instance, so it survives restarts.
Each tick requests at most `max_runs_per_tick` files, oldest first: a first start over thousands of files queues
them in bounded batches. Run keys (`<file>@<version>`) make a repeated request a no-op even without the cursor.

What a run will refuse or what left is said in the tick: a file not named `YYYY-MM-DD.csv` is requested like any
other (its run refuses it, naming the file, so the partition shows failed) with a warning; a loaded file that was
deleted from the location keeps its rows; the tick that first sees it gone logs a warning and records an observation
of its partition, and every tick that requests nothing counts the removed files in its skip reason.
"""

import json

import dagster as dg

from extract.files.integrity import drop_date
from orchestration.defs.files.jobs import FILES_LOAD_JOB
from orchestration.defs.files.partitions import SHARE_PRICES_KEY, scan_drops
from orchestration.defs.files.resources import ShareDropsResource
from orchestration.lib.automation import default_sensor_status
from orchestration.lib.environment import resolve

MAX_RUNS_PER_TICK = 100
_SHOWN = 10  # removed files named in a tick's message


def read_cursor(cursor: str | None) -> tuple[dict[str, str], set[str]]:
    """The cursor: `{file: version}` requested and not yet loaded, and the removed files already reported. Reads the
    earlier cursor too (the bare `{file: version}` object)."""
    state = json.loads(cursor) if cursor else {}
    if "requested" not in state:
        return state, set()
    return state["requested"], set(state.get("removed", []))


def write_cursor(requested: dict[str, str], removed: list[str]) -> str:
    return json.dumps({"requested": requested, "removed": sorted(removed)}, sort_keys=True)


def removed_message(removed: list[str]) -> str | None:
    """What a tick says about loaded files deleted from the location (None when there are none)."""
    if not removed:
        return None
    shown = ", ".join(removed[:_SHOWN]) + (f" (+{len(removed) - _SHOWN} more)" if len(removed) > _SHOWN else "")
    return (
        f"{len(removed)} loaded file(s) are no longer in the drop location; their rows stay in "
        f"raw_files.share_prices (see docs/files.md to retract them): {shown}"
    )


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
        requested, reported = read_cursor(context.cursor)
        scan = scan_drops(context.instance, share_drops.location)
        in_flight = {drop.name: drop.version for drop in scan.pending if requested.get(drop.name) == drop.version}
        batch = [drop for drop in scan.pending if drop.name not in in_flight][:max_runs_per_tick]
        waiting = len(scan.pending) - len(in_flight) - len(batch)
        if waiting:
            context.log.info(f"{waiting} more new or changed file(s) wait for the next tick")
        misnamed = [drop.name for drop in batch if drop_date(drop.name) is None]
        if misnamed:
            context.log.warning(
                f"{len(misnamed)} file(s) not named YYYY-MM-DD.csv (the drop date); their runs will refuse them, "
                f"rename them to load them: {', '.join(misnamed)}"
            )
        newly_removed = [name for name in scan.removed if name not in reported]
        if newly_removed:
            context.log.warning(f"newly removed: {removed_message(newly_removed)}")
        removed = removed_message(scan.removed)
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=f"{drop.name}@{drop.version}",
                    partition_key=drop.name,
                    tags={"share_price_file": drop.name},
                )
                for drop in batch
            ],
            skip_reason=f"no new or changed files; {removed}" if removed and not batch else None,
            asset_events=[
                dg.AssetObservation(
                    asset_key=SHARE_PRICES_KEY,
                    partition=name,
                    description=f"{name} was deleted from the drop location; its rows stay in raw_files.share_prices",
                    metadata={"removed_from_drop_location": dg.MetadataValue.text(share_drops.location)},
                )
                for name in newly_removed
            ],
            cursor=write_cursor({**in_flight, **{drop.name: drop.version for drop in batch}}, scan.removed),
        )

    return share_price_drops_sensor


@dg.definitions
def sensors() -> dg.Definitions:
    """The drop sensor, running by default in prod only."""
    return dg.Definitions(sensors=[build_drops_sensor(FILES_LOAD_JOB, default_sensor_status(resolve()))])
