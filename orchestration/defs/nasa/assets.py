"""The NASA NeoWs slice: the feed loaded by dlt into `raw_nasa.asteroids` (+ its close-approach child table).

One partition per feed day. A run loads its whole partition range in one dlt load (a backfill is a single run),
7 days per API request, merged on (neo_reference_id, feed day) so overlapping runs never duplicate. Without
`NASA_API_KEY` (and no base url) the run serves the recorded demo days from a local replay server.

A value of another type than its column's fails the run before anything is loaded, naming the day, the column and
the value (extract/nasa/source.py); a window without objects loads 0 rows and leaves both tables in place.
"""

from collections.abc import Iterator
from datetime import date
from functools import cache

import dagster as dg
import dlt
from dagster_dlt import DagsterDltResource, dlt_assets
from dlt.common.schema.exceptions import DataValidationError
from dlt.pipeline.exceptions import PipelineStepFailed
from pydantic import Field

from extract.nasa.source import NeowsError, create_missing_tables, feed_windows, neows
from orchestration.defs.nasa.partitions import (
    DEMO_START,
    DEV_WINDOW_DAYS,
    daily_partitions,
    feed_days,
    pending_feed_days,
    start_date,
)
from orchestration.defs.nasa.resources import DEMO_KEY, NasaApiResource
from orchestration.lib.asset_keys import WAREHOUSE_POOL
from orchestration.lib.dlt_translator import RawTableDltTranslator, landed_table_metadata
from orchestration.lib.planning import pending_partitions_metadata
from orchestration.lib.warehouse import WarehouseResource, drop_dlt_staging

PIPELINE_NAME, DATASET_NAME = "nasa_neows", "raw_nasa"


class NeowsRunConfig(dg.Config):
    ignore_date_limits: bool = Field(
        default=False,
        description=f"In dev and branch, load more than {DEV_WINDOW_DAYS} feed days from a real API in one run "
        "(prod has no limit). Named like dbt's var that lifts the dev data window.",
    )


def check_dev_window(env_name: str, first: date, last: date, config: NeowsRunConfig) -> None:
    """Refuse, before any request, a dev or branch run over more days than the dev window unless asked."""
    days = (last - first).days + 1
    if env_name == "prod" or days <= DEV_WINDOW_DAYS or config.ignore_date_limits:
        return
    raise dg.Failure(
        description=(
            f"the {env_name} environment loads at most {DEV_WINDOW_DAYS} NeoWs feed days per run, and this run "
            f"asks for {days} ({first}..{last}, {len(feed_windows(first, last))} API requests). Backfill a shorter "
            "range, or ask for all of it with the run config "
            "`ops: {nasa_neows: {config: {ignore_date_limits: true}}}`."
        ),
        metadata={"window": f"{first}..{last}", "days": days, "dev_window_days": DEV_WINDOW_DAYS},
    )


def _cause(error: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The `kind` exception under dlt's step-failure wrappers, if that is what failed."""
    seen: BaseException | None = error
    while seen is not None and not isinstance(seen, kind):
        seen = seen.__cause__ or seen.__context__
    return seen


def _neows_error(error: BaseException) -> NeowsError | None:
    """The NeowsError under dlt's step-failure wrappers, if the feed is what failed."""
    return _cause(error, NeowsError)


def contract_violation(error: DataValidationError, first: date, last: date) -> str:
    """dlt's schema contract refused a value (a field nobody declared changed type): say which, in the run's words.

    dlt's message names the table and the variant column it refused to add (`<column>__v_<type>`); the value is
    in the offending row it carries."""
    column = (error.column_name or "").split("__v_")[0]
    row = error.data_item if isinstance(error.data_item, dict) else {}
    value = row.get(error.column_name, row.get(column, "?"))
    day = row.get("close_approach_date", f"{first}..{last}")
    return (
        f"NeoWs feed {first}..{last}: column `{column}` of raw_nasa.{error.table_name} changed type on feed day "
        f"{day} (object {row.get('neo_reference_id', '?')}): {value!r} ({type(value).__name__}) does not fit the "
        f"column's type, and the schema contract (data_type: freeze) refuses to add the variant column "
        f"`{error.column_name}`. Nothing of this run was loaded; declare the field's type in "
        "extract/nasa/source.py (ASTEROID_COLUMNS / CLOSE_APPROACH_COLUMNS), then re-run the partition."
    )


@cache
def build_nasa_assets(first_day: str) -> dg.AssetsDefinition:
    """The NeoWs dlt asset over daily partitions from `first_day` (one definition per start date)."""

    @dlt_assets(
        # placeholders that define the asset specs; the run builds the real source and pipeline
        dlt_source=neows(date.fromisoformat(DEMO_START), date.fromisoformat(DEMO_START), api_key=DEMO_KEY),
        dlt_pipeline=dlt.pipeline(pipeline_name=PIPELINE_NAME, dataset_name=DATASET_NAME, destination="duckdb"),
        dagster_dlt_translator=RawTableDltTranslator(DATASET_NAME, group_name="nasa"),
        partitions_def=daily_partitions(first_day),
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        name="nasa_neows",
    )
    def nasa_assets(
        context: dg.AssetExecutionContext,
        config: NeowsRunConfig,
        dlt: DagsterDltResource,
        nasa_api: NasaApiResource,
        warehouse: WarehouseResource,
    ) -> Iterator[dg.MaterializeResult]:
        """Load the run's feed days (one partition or a backfill range) and report the table they landed in."""
        if not (context.has_partition_key or context.has_partition_key_range):
            raise dg.Failure(
                "raw_nasa/asteroids is partitioned by feed day: run it for a partition or a range (run tags "
                "dagster/asset_partition_range_start and _end); `elt run` loads the default window"
            )
        first, last = feed_days(context.partition_time_window)
        window = {
            "window": f"{first}..{last}",
            "days": (last - first).days + 1,
            "api_requests": len(feed_windows(first, last)),
        }
        with nasa_api.endpoint() as endpoint:
            if not endpoint.replayed:
                check_dev_window(warehouse.env_name, first, last, config)
            context.log.info(f"loading NeoWs feed {first}..{last} from {endpoint.label}")
            source = neows(first, last, api_key=endpoint.api_key, base_url=endpoint.base_url)
            pipeline = warehouse.dlt_pipeline(PIPELINE_NAME, DATASET_NAME)
            try:
                results = list(dlt.run(context=context, dlt_source=source, dlt_pipeline=pipeline))
            except PipelineStepFailed as error:
                if feed_error := _neows_error(error):  # raised while extracting: no package was kept
                    raise dg.Failure(description=str(feed_error), metadata=window) from error
                if violation := _cause(error, DataValidationError):
                    # refused while normalizing: drop the package, or the next run would retry it, not the source
                    pipeline.abort_packages()
                    raise dg.Failure(description=contract_violation(violation, first, last), metadata=window) from error
                raise
            # a window without objects on a fresh warehouse: create the close-approach table dlt made no rows for.
            # From a fresh view of the pipeline: dagster-dlt's metadata pops the types off the live schema's columns
            create_missing_tables(warehouse.dlt_pipeline(PIPELINE_NAME, DATASET_NAME))
            drop_dlt_staging(pipeline)  # dlt leaves the merge's raw_nasa_staging schema in the warehouse
        row_counts = pipeline.last_trace.last_normalize_info.row_counts
        for result in results:
            table = result.asset_key.path[-1]
            yield result._replace(
                metadata={
                    **(result.metadata or {}),
                    **landed_table_metadata(pipeline, result.asset_key),
                    **window,
                    "source": endpoint.label,
                    "rows_loaded": row_counts.get(table, 0),
                    "close_approach_rows_loaded": row_counts.get(f"{table}__close_approach_data", 0),
                }
            )

    return nasa_assets.map_asset_specs(
        lambda spec: spec.merge_attributes(metadata=pending_partitions_metadata(pending_feed_days))
    )


@dg.definitions
def assets() -> dg.Definitions:
    """The asset's partitions start at `ELT_NASA_START_DATE`, read when the definitions load."""
    return dg.Definitions(assets=[build_nasa_assets(start_date())])
