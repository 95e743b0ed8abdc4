"""`elt bench` in a fork that deleted one demo source: in a copy of the repository without that source's paths, the
benchmarks import, the stages that need the source are planned as skipped ("source <s> not present") and the
others as run, and no demo source is imported before a stage runs. One copy (without the shop) runs a stage and
records the skipped one in its results."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import copy_repository

SOURCES = ("files", "nasa", "shop", "hackernews")
GRAPH_STAGES = {"orchestration", "incremental", "noop", "automation"}  # the whole graph: files, nasa and shop
SKIPPED_WITHOUT = {
    "files": {"csv"} | GRAPH_STAGES,
    "nasa": {"nasa"} | GRAPH_STAGES,
    "shop": {"postgres"} | GRAPH_STAGES,
    "hackernews": set(),  # no stage runs it
}
EVERY_STAGE = {"csv", "postgres", "nasa", "orchestration", "incremental", "noop", "diff", "automation"}
# runs in the copy: import the CLI, then say what it would run and which demo sources (argv) it imported by then
PLAN = """
import json, sys
import benchmarks.cli
from benchmarks.harness import OPTIONAL_STAGES, STAGE_NAMES

print(json.dumps({
    "package": benchmarks.cli.__file__,
    "plan": benchmarks.cli.planned_stages(STAGE_NAMES + OPTIONAL_STAGES),
    "default": benchmarks.cli.planned_stages(),
    "imported": sorted(name for name in sys.modules if name.split(".")[:2][-1] in sys.argv[1:]),
}))
"""


def delete_source(copy: Path, source: str) -> list[Path]:
    """What a fork deletes to drop a demo source: its extract package, its definitions, its dbt models, its tests
    and its page of docs."""
    paths = [
        copy / "extract" / source,
        copy / "orchestration" / "defs" / source,
        *copy.glob(f"dbt_project/models/*/{source}"),
        *copy.glob(f"tests/test_{source}*.py"),
        copy / "tests" / f"fixtures_{source}.py",
        copy / "docs" / f"{source}.md",
    ]
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    assert not (copy / "extract" / source).exists()
    return paths


def environment(copy: Path) -> dict[str, str]:
    environ = {key: value for key, value in os.environ.items() if not key.startswith(("ELT_", "DAGSTER_CLOUD_"))}
    return environ | {"PYTHONPATH": str(copy), "ELT_DATA_DIR": str(copy / "data")}


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("bench_sources") / "repo"
    copy_repository(copy)
    return copy


@pytest.fixture(params=SOURCES)
def without_source(request: pytest.FixtureRequest, repository: Path, tmp_path: Path) -> tuple[str, Path]:
    copy = tmp_path / "repo"
    shutil.copytree(repository, copy)
    delete_source(copy, request.param)
    return request.param, copy


def test_bench_plans_every_stage_whose_sources_remain(without_source: tuple[str, Path]) -> None:
    source, copy = without_source
    command = [sys.executable, "-c", PLAN, *SOURCES]
    result = subprocess.run(command, cwd=copy, env=environment(copy), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"benchmarks.cli does not import without {source}:\n{result.stderr[-4000:]}"
    found = json.loads(result.stdout.splitlines()[-1])
    assert Path(found["package"]).is_relative_to(copy), "the copy's `benchmarks` package must be the one loaded"

    plan = found["plan"]
    assert set(plan) == EVERY_STAGE
    skipped = {stage for stage, reason in plan.items() if reason is not None}
    assert skipped == SKIPPED_WITHOUT[source]
    assert all(plan[stage] == f"source {source} not present" for stage in skipped)
    assert set(found["default"]) == EVERY_STAGE - {"diff", "automation"}  # those two only when named
    assert found["imported"] == [], f"importing the benchmarks imported demo sources: {found['imported']}"


def test_bench_without_the_shop_runs_the_csv_stage_and_records_postgres_as_skipped(
    repository: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "repo"
    shutil.copytree(repository, copy)
    delete_source(copy, "shop")
    output = tmp_path / "bench_results.json"
    command = [sys.executable, "-m", "benchmarks", "--scale", "tiny", "--repeat", "1", "--stage", "csv"]
    command += ["--stage", "postgres", "--work-dir", str(tmp_path / "work"), "--output", str(output)]
    result = subprocess.run(command, cwd=copy, env=environment(copy), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    results = json.loads(output.read_text())
    assert set(results["stages"]) == {"csv_to_raw"}
    assert results["stages"]["csv_to_raw"]["rows"] == 600  # tiny: 3 files of 200 rows
    assert results["skipped"] == {"postgres": "source shop not present"}
    assert results["peak_memory"]["stage"] == "csv_to_raw"
    assert "postgres: source shop not present" in result.stdout
    assert not (tmp_path / "work" / "postgres").exists()  # no PostgreSQL was started for a stage that did not run
    assert not (tmp_path / "work" / "data" / "tiny" / "neows").exists()  # nor NeoWs days generated for no stage
