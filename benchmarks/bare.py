"""The platform's extract steps run bare, with no Dagster: what a shell script would call.

`python -m benchmarks.bare files|nasa <recorded_dir>|shop` loads one source into the resolved environment's
warehouse through the same public entry points the Dagster assets use (the dlt sources, `replicate_shop`). The
benchmark's graph scripts chain these with `dbt build`; the CSV and NeoWs stages call the functions directly.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path

import dlt

from extract.destination import warehouse_destination
from orchestration.lib.environment import Environment, local_path_setting, resolve


def dlt_pipeline(env: Environment, pipeline_name: str, dataset_name: str) -> dlt.Pipeline:
    """A dlt pipeline into the environment's DuckDB file, as `WarehouseResource.dlt_pipeline` builds it (same
    destination; the resource module itself is not imported: it imports Dagster, not paid for in a bare script)."""
    return dlt.pipeline(
        pipeline_name=pipeline_name,
        destination=warehouse_destination(env.warehouse, motherduck=env.is_motherduck),
        dataset_name=dataset_name,
        pipelines_dir=str(env.dlt_pipelines_dir),
    )


def load_share_prices(env: Environment, drop_dir: str) -> None:
    from extract.files.source import share_price_files

    dlt_pipeline(env, "files_share_prices", "raw_files").run(share_price_files(drop_dir=drop_dir))


def load_neows(env: Environment, recorded_dir: Path) -> None:
    """The 7 generated feed days, served by the NeoWs replay server, through the NeoWs dlt source."""
    from benchmarks.generate import FEED_DAYS, FEED_START
    from extract.nasa.replay import ReplayServer
    from extract.nasa.source import neows

    with ReplayServer(recorded_dir) as replay:
        source = neows(FEED_START, FEED_START + timedelta(days=FEED_DAYS - 1), "DEMO_KEY", base_url=replay.base_url)
        dlt_pipeline(env, "nasa_neows", "raw_nasa").run(source)


def replicate(env: Environment, url: str) -> None:
    from extract.shop.replicate import replicate_shop

    replicate_shop(url, Path(env.warehouse))


def main(argv: list[str]) -> None:
    env, shop_url = resolve(), os.environ.get("ELT_SHOP_POSTGRES_URL")
    match argv:
        case ["files"]:
            from extract.files.source import DEMO_DROPS

            load_share_prices(env, local_path_setting("ELT_FILES_DROP_DIR", DEMO_DROPS))
        case ["nasa", recorded_dir]:
            load_neows(env, Path(recorded_dir))
        case ["shop"] if shop_url:
            replicate(env, shop_url)
        case ["shop"]:
            raise SystemExit("benchmarks.bare shop: set ELT_SHOP_POSTGRES_URL to the shop to replicate")
        case _:
            raise SystemExit(f"usage: python -m benchmarks.bare files | nasa <recorded_dir> | shop (got {argv})")


if __name__ == "__main__":
    main(sys.argv[1:])
