"""The CSV drops slice: share-price files -> dlt -> `raw_files.share_prices`."""

import dagster as dg
import dlt
from dagster_dlt import DagsterDltResource, dlt_assets

from extract.files.source import DEMO_DROPS, list_drop_files, share_price_files
from orchestration.lib.asset_keys import WAREHOUSE_POOL
from orchestration.lib.dlt_translator import RawTableDltTranslator
from orchestration.lib.warehouse import WarehouseResource


class ShareDropsResource(dg.ConfigurableResource):
    """The folder the share-price CSV files are dropped into."""

    location: str = str(DEMO_DROPS)


@dlt_assets(
    dlt_source=share_price_files(),
    dlt_pipeline=dlt.pipeline(pipeline_name="files_share_prices", dataset_name="raw_files", destination="duckdb"),
    name="files_share_prices",
    dagster_dlt_translator=RawTableDltTranslator("raw_files", group_name="files"),
    pool=WAREHOUSE_POOL,
)
def files_assets(
    context: dg.AssetExecutionContext,
    dlt: DagsterDltResource,
    share_drops: ShareDropsResource,
    warehouse: WarehouseResource,
):
    """Load every drop file; a re-loaded file replaces its own rows (delete-insert on `_source_file`)."""
    files = [path.name for path in list_drop_files(share_drops.location)]
    context.log.info(f"loading {len(files)} share-price file(s) from {share_drops.location}")
    yield from dlt.run(
        context=context,
        dlt_source=share_price_files(drop_dir=share_drops.location),
        dlt_pipeline=warehouse.dlt_pipeline("files_share_prices", "raw_files"),
    )
