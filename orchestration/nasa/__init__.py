"""The NASA NeoWs slice: the feed loaded by dlt into `raw_nasa`, one daily partition per feed day."""

from orchestration.nasa.assets import build_nasa_assets, nasa_assets
from orchestration.nasa.partitions import nasa_partitions, run_window
from orchestration.nasa.resources import NasaApiResource

__all__ = ["NasaApiResource", "build_nasa_assets", "nasa_assets", "nasa_partitions", "run_window"]
