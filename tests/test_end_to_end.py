"""End to end: the whole asset graph, materialized through Dagster into a temp warehouse, on the bundled demo
sources (CSV drops, NeoWs replay server, demo PostgreSQL) exactly as `elt run` does. Expected counts are derived
from the inputs, not written down."""

import csv
import inspect
import json

import dagster as dg
import duckdb
import pytest

from extract.files.source import DEMO_DROPS
from extract.nasa.replay import RECORDED_DIR
from extract.shop.seed import seed_shop
from orchestration.cli import run_pipeline
from orchestration.environment import resolve, source_settings


def _expected_counts() -> dict[str, int]:
    rows = [row for path in sorted(DEMO_DROPS.glob("*.csv")) for row in csv.DictReader(path.open())]
    neos = [
        neo
        for path in sorted(RECORDED_DIR.glob("feed_*.json"))
        for day in json.loads(path.read_text())["near_earth_objects"].values()
        for neo in day
    ]
    shop = {name: p.default for name, p in inspect.signature(seed_shop).parameters.items()}
    return {
        "raw_files.share_prices": len(rows),
        "raw_nasa.asteroids": len(neos),
        "raw_nasa.asteroids__close_approach_data": sum(len(neo["close_approach_data"]) for neo in neos),
        "raw_shop.customers": shop["customers"],
        "raw_shop.products": shop["products"],
        "raw_shop.orders": shop["orders"],
        "marts.fct_share_prices_daily": len({row["date"] for row in rows}),
        "marts.fct_close_approaches": sum(len(neo["close_approach_data"]) for neo in neos),
        "marts.dim_asteroids": len({neo["neo_reference_id"] for neo in neos}),
        "marts.dim_customers": shop["customers"],
        "marts.fct_orders": shop["orders"],
    }


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory):
    """Two runs in a row on one temp warehouse; each run's summary and the warehouse location."""
    env = resolve({"ELT_DATA_DIR": str(tmp_path_factory.mktemp("data"))})
    with dg.instance_for_test() as instance:
        first = run_pipeline(env, source_settings({}), instance=instance)
        second = run_pipeline(env, source_settings({}), instance=instance)
    return env, first, second


def test_whole_graph_lands_every_table(demo_runs):
    env, first, _ = demo_runs
    assert first.success, first.failed_steps
    assert env.warehouse.endswith("warehouse/dev.duckdb")
    assert dict(first.table_rows) == _expected_counts()


def test_dbt_tests_ran_and_passed_as_asset_checks(demo_runs):
    _, first, _ = demo_runs
    assert not first.checks_failed
    # every model and source has tests: dozens of checks, and the raw tables' own source tests among them
    assert first.checks_passed >= 50


def test_second_run_changes_no_counts(demo_runs):
    _, first, second = demo_runs
    assert second.ok
    assert second.table_rows == first.table_rows


def test_marts_hold_real_values(demo_runs):
    env, *_ = demo_runs
    with duckdb.connect(env.warehouse, read_only=True) as con:
        lifetime = con.sql("select sum(lifetime_value) from marts.dim_customers").fetchone()[0]
        orders_total = con.sql("select sum(total_amount) from raw_shop.orders").fetchone()[0]
        price = con.sql(
            "select share_price from marts.fct_share_prices_daily where trading_date = date '2018-09-28'"
        ).fetchone()[0]
    assert lifetime == orders_total
    assert float(price) == 264.77


def test_elt_run_exits_non_zero_when_a_dbt_test_fails(tmp_path):
    """A drop with a negative share price loads (raw keeps what arrived) but fails dbt's positive_value test:
    `elt run` reports the failed test and exits 1."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    drops = tmp_path / "drops"
    shutil.copytree(DEMO_DROPS, drops)
    (drops / "2018-01-24.csv").write_text(
        '"date","share_price","amount","spend","shift","spread"\n'
        '"2018/10/16","-1.0000","1.0000","1.0000","1.0000","1.0000"\n'
    )
    elt = Path(sys.executable).parent / "elt"
    result = subprocess.run(
        [str(elt), "run"],
        capture_output=True,
        text=True,
        env={**os.environ, "ELT_DATA_DIR": str(tmp_path / "data"), "ELT_FILES_DROP_DIR": str(drops)},
    )
    assert result.returncode == 1, result.stdout[-3000:]
    assert "positive_value" in result.stdout
    assert "the run failed" in result.stdout
