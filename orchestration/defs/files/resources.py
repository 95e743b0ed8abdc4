"""Where share-price files are dropped: `ELT_FILES_DROP_DIR` (a folder or `s3://bucket/prefix`), else the demo drops
bundled in extract/files/demo_drops. S3 credentials and endpoint come from the standard AWS variables."""

import dagster as dg

from extract.files.source import DEMO_DROPS
from orchestration.lib.environment import local_path_setting

DROP_DIR_SETTING = "ELT_FILES_DROP_DIR"


class ShareDropsResource(dg.ConfigurableResource):
    """Where share-price CSV files are dropped: a local folder or an `s3://bucket/prefix` URL."""

    location: str = str(DEMO_DROPS)


@dg.definitions
def resources() -> dg.Definitions:
    location = local_path_setting(DROP_DIR_SETTING, DEMO_DROPS)
    return dg.Definitions(resources={"share_drops": ShareDropsResource(location=location)})
