"""The Hacker News slice's asset: `raw_hackernews/items`, the newest items of the HN API loaded by dlt.

Incremental on item id: each run asks `/v0/maxitem.json`, then only for the ids above the highest one loaded (at
most `max_items` of the newest), merged on `id`, so a re-run never duplicates. The cursor is dlt's own state.

A field of another type than its column's fails the run before anything is loaded, naming the item, its day, the
column and the value (extract/hackernews/source.py); the cursor stays, so the next run asks for the same items.
"""

from collections.abc import Iterator

import dagster as dg
import dlt
from dagster_dlt import DagsterDltResource, dlt_assets
from dlt.common.schema.exceptions import DataValidationError
from dlt.pipeline.exceptions import PipelineStepFailed

from extract.hackernews.source import HackerNewsError, hackernews
from orchestration.defs.hackernews.resources import HackerNewsApiResource
from orchestration.lib.asset_keys import WAREHOUSE_POOL
from orchestration.lib.dlt_translator import RawTableDltTranslator, landed_table_metadata
from orchestration.lib.warehouse import WarehouseResource, drop_dlt_staging

PIPELINE_NAME, DATASET_NAME = "hackernews_items", "raw_hackernews"


def _cause(error: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The `kind` exception under dlt's step-failure wrappers, if that is what failed."""
    seen: BaseException | None = error
    while seen is not None and not isinstance(seen, kind):
        seen = seen.__cause__ or seen.__context__
    return seen


def contract_violation(error: DataValidationError) -> str:
    """dlt's schema contract refused a value of a field nobody declared: which column, item and value."""
    column = (error.column_name or "").split("__v_")[0]
    row = error.data_item if isinstance(error.data_item, dict) else {}
    value = row.get(error.column_name, row.get(column, "?"))
    return (
        f"Hacker News item {row.get('id', '?')}: column `{column}` of raw_hackernews.{error.table_name} changed type: "
        f"{value!r} ({type(value).__name__}) does not fit the column's type, and the schema contract (data_type: "
        f"freeze) refuses to add the variant column `{error.column_name}`. Nothing of this run was loaded; declare "
        "the field's type in extract/hackernews/source.py (ITEM_COLUMNS), then re-run."
    )


@dlt_assets(
    # placeholders that define the asset spec; the run builds the real source and pipeline
    dlt_source=hackernews(),
    dlt_pipeline=dlt.pipeline(pipeline_name=PIPELINE_NAME, dataset_name=DATASET_NAME, destination="duckdb"),
    dagster_dlt_translator=RawTableDltTranslator(DATASET_NAME, group_name="hackernews"),
    pool=WAREHOUSE_POOL,
    name=PIPELINE_NAME,
)
def hackernews_assets(
    context: dg.AssetExecutionContext,
    dlt: DagsterDltResource,
    hackernews_api: HackerNewsApiResource,
    warehouse: WarehouseResource,
) -> Iterator[dg.MaterializeResult]:
    """Load the items newer than the last run's and report the table they landed in."""
    with hackernews_api.endpoint() as (base_url, label):
        context.log.info(f"loading at most {hackernews_api.max_items} new Hacker News item(s) from {label}")
        source = hackernews(base_url=base_url, max_items=hackernews_api.max_items)
        pipeline = warehouse.dlt_pipeline(PIPELINE_NAME, DATASET_NAME)
        try:
            results = list(dlt.run(context=context, dlt_source=source, dlt_pipeline=pipeline))
        except PipelineStepFailed as error:
            if api_error := _cause(error, HackerNewsError):  # raised while extracting: no package was kept
                raise dg.Failure(description=str(api_error), metadata={"source": label}) from error
            if violation := _cause(error, DataValidationError):
                # refused while normalizing: drop the package (and restore the cursor), or the next run retries it
                pipeline.abort_packages()
                raise dg.Failure(description=contract_violation(violation), metadata={"source": label}) from error
            raise
        drop_dlt_staging(pipeline)  # dlt leaves the merge's raw_hackernews_staging schema in the warehouse
    row_counts = pipeline.last_trace.last_normalize_info.row_counts if pipeline.last_trace else {}
    for result in results:
        yield result._replace(
            metadata={
                **(result.metadata or {}),
                **landed_table_metadata(pipeline, result.asset_key),
                "source": label,
                "rows_loaded": row_counts.get(result.asset_key.path[-1], 0),
            }
        )
