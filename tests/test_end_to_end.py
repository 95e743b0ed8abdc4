"""End to end: the whole asset graph, materialized through Dagster into a temp warehouse, on the bundled demo
sources (CSV drops, NeoWs replay server, demo PostgreSQL) exactly as `elt run` does. Expected counts are derived
from the inputs, not written down."""

import csv
import importlib
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from extract.files.source import DEMO_DROPS
from orchestration.definitions import load_definitions
from orchestration.pipeline import partitioned_assets, run_pipeline
from tests.fixtures_shop import DEV_WINDOW

FIXTURE_MODULES = sorted(path.stem for path in Path(__file__).parent.glob("fixtures_*.py"))


def expected_counts(warehouse: str) -> dict[str, int]:
    """Row counts derived from the inputs: every source's fixtures module says what a demo run lands
    (`demo_row_counts`); a source whose module says nothing leaves tables no count matches, and the test fails."""
    expected: dict[str, int] = {}
    with duckdb.connect(warehouse, read_only=True) as con:
        for name in FIXTURE_MODULES:
            counts = getattr(importlib.import_module(f"tests.{name}"), "demo_row_counts", None)
            if counts:
                expected.update(counts(con))
    return expected


@pytest.fixture(scope="module")
def demo_runs(module_platform_env):
    """Two runs in a row on one temp warehouse, as `elt run` does; each run's summary."""
    with dg.instance_for_test() as instance:
        first = run_pipeline(instance=instance)
        second = run_pipeline(instance=instance)
    return first, second


def test_whole_graph_lands_every_table(demo_runs, module_platform_env):
    first, _ = demo_runs
    assert first.success, first.failed_steps
    assert first.warehouse == str(module_platform_env / "warehouse" / "dev.duckdb")
    assert dict(first.table_rows) == expected_counts(first.warehouse)


def test_dbt_tests_ran_and_passed_as_asset_checks(demo_runs):
    first, _ = demo_runs
    assert not first.checks_failed
    # every model and source has tests: dozens of checks, and the raw tables' own source tests among them
    assert first.checks_passed >= 50


def test_runs_are_planned_from_the_definitions_and_a_second_run_loads_nothing_new(demo_runs):
    first, second = demo_runs
    # the first pass: a run per partitioned asset's pending range (the demo drops, the recorded NeoWs days), then
    # every unpartitioned asset; the second finds no pending partition
    partitioned = [assets_def.node_def.name for assets_def in partitioned_assets(load_definitions())]
    assert len(partitioned) >= 2
    assert [run.split(" ")[0] for run in first.runs] == [*partitioned, "elt_all:"]
    assert all(run.endswith(": ok") for run in first.runs), first.runs
    assert [run.split(" ")[0] for run in second.runs] == ["elt_all:"]
    assert second.ok
    assert second.table_rows == first.table_rows


def test_marts_hold_real_values(demo_runs):
    first, _ = demo_runs
    with duckdb.connect(first.warehouse, read_only=True) as con:
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
    # a normal run is quiet: no Python warning and no Dagster warning (the bad file is an error, and said once)
    assert "Warning:" not in output and " - WARNING - " not in output, [
        line for line in output.splitlines() if "Warning:" in line or " - WARNING - " in line
    ][:5]
    good_rows = sum(1 for path in DEMO_DROPS.glob("*.csv") for _ in csv.DictReader(path.open()))
    with duckdb.connect(str(tmp_path / "data" / "warehouse" / "dev.duckdb"), read_only=True) as con:
        loaded = dict(con.sql("select _source_file, count(*) from raw_files.share_prices group by 1").fetchall())
    assert "2018-01-24.csv" not in loaded
    assert sum(loaded.values()) == good_rows
