"""The NASA NeoWs slice: the feed loaded by dlt into `raw_nasa.asteroids` (+ its close-approach child table).

Without `NASA_API_KEY` (and no base url) the run serves the recorded demo days from a local replay server.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date

import dagster as dg
import dlt
from dagster_dlt import DagsterDltResource, dlt_assets

from extract.nasa.replay import ReplayServer
from extract.nasa.source import NASA_API_URL, neows
from orchestration.lib.asset_keys import WAREHOUSE_POOL
from orchestration.lib.dlt_translator import RawTableDltTranslator
from orchestration.lib.warehouse import WarehouseResource

DEMO_KEY = "DEMO_KEY"
DEMO_START, DEMO_END = "2018-09-05", "2018-09-11"  # the recorded days in extract/nasa/recorded


@dataclass(frozen=True)
class NeowsEndpoint:
    base_url: str
    api_key: str
    replayed: bool


class NasaApiResource(dg.ConfigurableResource):
    """The NeoWs API: the real one with `api_key`, another with `base_url`, else the recorded demo replay."""

    api_key: str | None = None
    base_url: str | None = None

    @contextmanager
    def endpoint(self) -> Iterator[NeowsEndpoint]:
        """Where to send feed requests; a replay server lives as long as the `with` block."""
        if self.api_key or self.base_url:
            yield NeowsEndpoint(self.base_url or NASA_API_URL, self.api_key or DEMO_KEY, replayed=False)
            return
        with ReplayServer() as replay:
            yield NeowsEndpoint(replay.base_url, DEMO_KEY, replayed=True)


class NeowsWindow(dg.Config):
    """The feed days to load, both inclusive (a later issue replaces this with daily partitions)."""

    start_date: str = DEMO_START
    end_date: str = DEMO_END

    def dates(self) -> tuple[date, date]:
        try:
            start, end = date.fromisoformat(self.start_date), date.fromisoformat(self.end_date)
        except ValueError as error:
            raise dg.Failure(f"NeowsWindow start_date/end_date must be YYYY-MM-DD: {error}") from None
        if end < start:
            raise dg.Failure(f"NeowsWindow end_date {end} is before start_date {start}")
        return start, end


@dlt_assets(
    # placeholders that define the asset specs; the run builds the real source and pipeline
    dlt_source=neows(date.fromisoformat(DEMO_START), date.fromisoformat(DEMO_END), api_key=DEMO_KEY),
    dlt_pipeline=dlt.pipeline(pipeline_name="nasa_neows", dataset_name="raw_nasa", destination="duckdb"),
    dagster_dlt_translator=RawTableDltTranslator("raw_nasa", group_name="nasa"),
    pool=WAREHOUSE_POOL,
    name="nasa_neows",
)
def nasa_assets(
    context: dg.AssetExecutionContext,
    config: NeowsWindow,
    dlt: DagsterDltResource,
    nasa_api: NasaApiResource,
    warehouse: WarehouseResource,
) -> Iterator[dg.MaterializeResult]:
    start, end = config.dates()
    with nasa_api.endpoint() as endpoint:
        context.log.info(f"loading NeoWs feed {start}..{end} from {endpoint.base_url}")
        source = neows(start, end, api_key=endpoint.api_key, base_url=endpoint.base_url)
        pipeline = warehouse.dlt_pipeline("nasa_neows", "raw_nasa")
        origin = "recorded demo replay" if endpoint.replayed else endpoint.base_url
        for result in dlt.run(context=context, dlt_source=source, dlt_pipeline=pipeline):
            context.add_asset_metadata({"window": f"{start}..{end}", "source": origin}, asset_key=result.asset_key)
            yield result
