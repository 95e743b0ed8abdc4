"""The NASA NeoWs slice: the feed loaded by dlt into `raw_nasa`."""

from orchestration.nasa.assets import NasaApiResource, nasa_assets

__all__ = ["NasaApiResource", "nasa_assets"]
