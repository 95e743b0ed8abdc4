"""End to end: the whole asset graph, materialized through Dagster into a temp warehouse, on the bundled demo
sources exactly as `elt run` does (the session's `demo_run`), then a second pass on a copy of it. Expected counts
come from each source's fixtures module (`demo_row_counts`), derived from the inputs, not written down here; the
test knows no source by name."""

import dagster as dg
import pytest

from orchestration.definitions import load_definitions
from orchestration.pipeline import partitioned_assets, run_pipeline
from tests.support import expected_counts, use_platform_env


@pytest.fixture(scope="module")
def second_run(demo_run, tmp_path_factory):
    """`elt run` again on a copy of the demo run's data dir and instance: what a second run finds."""
    data_dir = demo_run.copy_to(tmp_path_factory.mktemp("second_run"))
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_platform_env(monkeypatch, data_dir)
        monkeypatch.setenv("DAGSTER_HOME", str(data_dir / "dagster"))
        with dg.DagsterInstance.from_config(str(data_dir / "dagster")) as instance:
            summary = run_pipeline(instance=instance, log_level="WARNING")
        partitioned = [assets_def.node_def.name for assets_def in partitioned_assets(load_definitions())]
    return summary, partitioned


def test_whole_graph_lands_every_table(demo_run):
    first = demo_run.summary
    assert first.success, first.failed_steps
    assert first.warehouse == str(demo_run.data_dir / "warehouse" / "dev.duckdb")
    assert dict(first.table_rows) == expected_counts(first.warehouse)


def test_dbt_tests_ran_and_passed_as_asset_checks(demo_run):
    first = demo_run.summary
    assert not first.checks_failed
    # every model and source has tests: dozens of checks, and the raw tables' own source tests among them
    assert first.checks_passed >= 50


def test_runs_are_planned_from_the_definitions_and_a_second_run_loads_nothing_new(demo_run, second_run):
    first = demo_run.summary
    second, partitioned = second_run
    # the first pass: a run per partitioned asset's pending range (the demo drops, the recorded NeoWs days ...),
    # then every unpartitioned asset; the second finds no pending partition
    assert [run.split(" ")[0] for run in first.runs] == [*partitioned, "elt_all:"]
    assert all(run.endswith(": ok") for run in first.runs), first.runs
    assert [run.split(" ")[0] for run in second.runs] == ["elt_all:"]
    assert second.ok
    assert second.table_rows == first.table_rows
