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

DEV_WINDOW = "cast(order_date as date) > (select max(cast(order_date as date)) from raw_shop.orders) - 90"


def _expected_counts(warehouse: str) -> dict[str, int]:
    """Row counts derived from the inputs; the shop marts from the raw orders inside dbt's dev window (90 days up
    to the newest order)."""
    rows = [row for path in sorted(DEMO_DROPS.glob("*.csv")) for row in csv.DictReader(path.open())]
    neos = [
        neo
        for path in sorted(RECORDED_DIR.glob("feed_*.json"))
        for day in json.loads(path.read_text())["near_earth_objects"].values()
        for neo in day
    ]
    shop = {name: p.default for name, p in inspect.signature(seed_shop).parameters.items()}
    with duckdb.connect(warehouse, read_only=True) as con:
        orders_in_window, order_days = con.sql(
            "select count(*), max(order_date)::date - min(order_date)::date + 1 "
            f"from raw_shop.orders where {DEV_WINDOW}"
        ).fetchone()
    return {
        "raw_files.share_prices": len(rows),
        "raw_nasa.asteroids": len(neos),
        "raw_nasa.asteroids__close_approach_data": sum(len(neo["close_approach_data"]) for neo in neos),
        "raw_shop.customers": shop["customers"],
        "raw_shop.products": shop["products"],
        "raw_shop.orders": shop["orders"],
        "marts.fct_share_prices_daily": len({row["date"] for row in rows}),
        "marts.fct_close_approaches": sum(len(neo["close_approach_data"]) for neo in neos),
        "marts.fct_close_approaches_daily": len(
            {a["close_approach_date"] for n in neos for a in n["close_approach_data"]}
        ),
        "marts.dim_asteroids": len({neo["neo_reference_id"] for neo in neos}),
        "marts.dim_customers": shop["customers"],
        "marts.dim_products": shop["products"],
        "marts.fct_orders": orders_in_window,
        "marts.fct_revenue_daily": order_days,
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
    assert dict(first.table_rows) == _expected_counts(env.warehouse)


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
        orders_total = con.sql(f"select sum(total_amount) from raw_shop.orders where {DEV_WINDOW}").fetchone()[0]
        price = con.sql(
            "select share_price from marts.fct_share_prices_daily where trading_date = date '2018-09-28'"
        ).fetchone()[0]
    assert lifetime == orders_total
    assert float(price) == 264.77


def test_elt_run_refuses_a_bad_drop_loads_the_rest_and_exits_non_zero(tmp_path):
    """A drop with a negative share price fails the integrity check before its load: `elt run` names the file, row
    and column, still loads the good files, and exits 1."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    drops = tmp_path / "drops"
    shutil.copytree(DEMO_DROPS, drops)
    (drops / "2018-01-24.csv").write_text(
        '"date","share_price","amount","spend","shift","spread"\n'
        '"2018/10/16","1.0000","1.0000","1.0000","1.0000","1.0000"\n'
        '"2018/10/17","-1.0000","1.0000","1.0000","1.0000","1.0000"\n'
    )
    elt = Path(sys.executable).parent / "elt"
    result = subprocess.run(
        [str(elt), "run"],
        capture_output=True,
        text=True,
        env={**os.environ, "ELT_DATA_DIR": str(tmp_path / "data"), "ELT_FILES_DROP_DIR": str(drops)},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert "the run failed" in result.stdout
    assert "2018-01-24.csv" in output and "share_price" in output and "row 2" in output, output[-3000:]
    good_rows = sum(1 for path in DEMO_DROPS.glob("*.csv") for _ in csv.DictReader(path.open()))
    with duckdb.connect(str(tmp_path / "data" / "warehouse" / "dev.duckdb"), read_only=True) as con:
        loaded = dict(con.sql("select _source_file, count(*) from raw_files.share_prices group by 1").fetchall())
    assert "2018-01-24.csv" not in loaded
    assert sum(loaded.values()) == good_rows
