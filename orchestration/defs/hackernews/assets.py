"""The Hacker News slice's asset: `raw_hackernews/items`, the newest items of the HN API loaded by dlt.

Incremental on item id: each run asks `/v0/maxitem.json`, then only for the ids above the highest one loaded (at
most `max_items` of the newest), merged on `id`, so a re-run never duplicates. The cursor is dlt's own state.
"""

from collections.abc import Iterator

import dagster as dg
import dlt
from dagster_dlt import DagsterDltResource, dlt_assets

from extract.hackernews.source import hackernews
from orchestration.defs.hackernews.resources import HackerNewsApiResource
from orchestration.lib.asset_keys import WAREHOUSE_POOL
from orchestration.lib.dlt_translator import RawTableDltTranslator, landed_table_metadata
from orchestration.lib.warehouse import WarehouseResource

PIPELINE_NAME, DATASET_NAME = "hackernews_items", "raw_hackernews"


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
        results = list(dlt.run(context=context, dlt_source=source, dlt_pipeline=pipeline))
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
