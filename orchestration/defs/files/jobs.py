"""The `files_load` job: check and load share-price files, one partition per file."""

import dagster as dg

from orchestration.defs.files.assets import INTEGRITY_CHECK
from orchestration.defs.files.partitions import SHARE_PRICES_KEY

FILES_LOAD_JOB = "files_load"

files_load = dg.define_asset_job(
    FILES_LOAD_JOB,
    # the load and its own integrity check; the dbt source tests on raw_files run with `dbt build`
    selection=dg.AssetSelection.assets(SHARE_PRICES_KEY).without_checks()
    | dg.AssetSelection.checks(dg.AssetCheckKey(SHARE_PRICES_KEY, INTEGRITY_CHECK)),
    description="Check and load share-price files into raw_files.share_prices: one partition per file; a run may "
    "cover a range of files (single-run backfill).",
)
