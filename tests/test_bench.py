"""A smoke run of `elt bench` at the tiny scale, once: every stage whose sources are present measured, the JSON
complete and plausible.

Benchmarks stay out of the test suite; this only proves the harness runs end to end on real components.
"""

import json
import re
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from benchmarks.cli import bench, planned_stages
from benchmarks.generate import SCALES

SAMPLE_DROP = Path(__file__).parent.parent / "extract" / "files" / "demo_drops" / "2018-01-22.csv"
SAMPLE_ROW = re.compile(r'^"\d{4}/\d{2}/\d{2}"(,"\d+\.\d{4}"){5}$')
RESULT_NAMES = {  # a default stage (`--stage`) -> its row in the results
    "csv": "csv_to_raw",
    "postgres": "postgres_to_raw",
    "nasa": "nasa_to_raw",
    "orchestration": "orchestration_overhead",
    "incremental": "incremental_orders",
    "noop": "noop_rerun",
}


@pytest.mark.slow
def test_bench_smoke_run_reports_every_stage() -> None:
    # not pytest's tmp_path: concurrent pytest sessions prune each other's old basetemp folders, and this run is long
    # enough for its PostgreSQL data folder to be deleted under it
    with tempfile.TemporaryDirectory(prefix="elt-bench-test-") as folder:
        _smoke_run(Path(folder))


def _smoke_run(tmp_path: Path) -> None:
    scale = SCALES["tiny"]
    plan = planned_stages()
    assert set(plan) == set(RESULT_NAMES)
    output = tmp_path / "bench_results.json"
    result = CliRunner().invoke(
        bench, ["--scale", "tiny", "--repeat", "1", "--work-dir", str(tmp_path / "work"), "--output", str(output)]
    )
    assert result.exit_code == 0, result.output

    results = json.loads(output.read_text())
    stages = results["stages"]
    assert set(stages) == {RESULT_NAMES[name] for name, skipped in plan.items() if skipped is None}
    assert results["skipped"] == {name: skipped for name, skipped in plan.items() if skipped is not None}
    for name, stage in stages.items():
        assert stage["platform_rows_per_s"] > 0 and stage["reference_rows_per_s"] > 0, name
        assert stage["ratio"] > 0 and stage["platform_peak_mib"] > 0, name
        assert len(stage["platform_seconds"]) == 1, name
    if "csv_to_raw" in stages:
        assert stages["csv_to_raw"]["rows"] == scale.files * scale.rows_per_file
    if "postgres_to_raw" in stages:
        assert stages["postgres_to_raw"]["rows"] == scale.customers + 40 + scale.orders
    if "nasa_to_raw" in stages:
        assert stages["nasa_to_raw"]["rows"] == 7 * scale.neos_per_day
    if stages:
        assert results["peak_memory"]["platform_peak_mib"] == max(s["platform_peak_mib"] for s in stages.values())
    assert "stage" in result.output and "ratio" in result.output  # the table was printed

    # the generated drops are in the sample's format: its header, every value quoted, 2018/09/28, 264.7700
    if "csv_to_raw" in stages:
        drops = sorted((tmp_path / "work" / "data" / "tiny" / "drops").glob("*.csv"))
        assert len(drops) == scale.files
        lines = drops[0].read_text().splitlines()
        assert lines[0] == SAMPLE_DROP.read_text().splitlines()[0]
        assert len(lines) == scale.rows_per_file + 1 and all(SAMPLE_ROW.match(line) for line in lines[1:])
