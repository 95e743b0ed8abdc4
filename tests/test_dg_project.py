"""The repository is a dg project with one code location, `elt_platform`, whichever CLI loads it: `dg list defs`,
`dg launch` and `dagster job launch` see the definitions `load_definitions()` gives. The job launched is a source's
load job found in the definitions, whichever sources the project has."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from orchestration.definitions import load_definitions
from orchestration.lib.environment import REPO_ROOT
from orchestration.lib.instance import DAGSTER_YAML

BIN = Path(sys.executable).parent
CODE_LOCATION = "elt_platform"


def cli(*args: str, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(BIN / args[0]), *args[1:]], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def load_job() -> tuple[str, list[dg.AssetKey]]:
    """A source's load job, as the definitions have it: an unpartitioned asset job that selects only assets nothing
    upstream feeds (extracts); of those, the one with the fewest assets, then by name. Returns its name and assets."""
    defs = load_definitions()
    graph = defs.resolve_asset_graph()
    candidates = []
    for job in defs.resolve_all_job_defs():
        keys = sorted(job.asset_layer.selected_asset_keys)
        if keys and not job.partitions_def and not any(graph.get(key).parent_keys for key in keys):
            candidates.append((len(keys), job.name, keys))
    if not candidates:
        pytest.skip("no source has an unpartitioned load job")
    _, name, keys = min(candidates)
    return name, keys


def rows_loaded(warehouse: Path, keys: list[dg.AssetKey]) -> int:
    """Rows in the tables of `keys` (an extract asset's key is `<schema>/<table>`)."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return sum(con.sql('select count(*) from "{}"."{}"'.format(*key.path)).fetchone()[0] for key in keys)


@pytest.fixture
def instance_env(platform_env: Path) -> dict[str, str]:
    """The test's own environment and Dagster instance (what `elt dev` prepares), as a subprocess sees them."""
    home = platform_env / "dagster"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    with dg.DagsterInstance.from_config(str(home)):  # create its storage once: two processes racing to do it clash
        pass
    return {**os.environ, "DAGSTER_HOME": str(home)}


def test_dg_lists_the_definitions_load_definitions_gives(instance_env):
    # `dg list defs` loads and validates them as `dg check defs` does (one load of the two is enough here)
    listed = json.loads(cli("dg", "list", "defs", "--json", env=instance_env).stdout)
    defs = load_definitions()
    assert {asset["asset_key"] for asset in listed["assets"]} == {
        key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()
    }
    assert {job["name"] for job in listed["jobs"]} >= {job.name for job in defs.jobs}
    assert {schedule["name"] for schedule in listed["schedules"]} == {schedule.name for schedule in defs.schedules}
    assert {sensor["name"] for sensor in listed["sensors"]} == {sensor.name for sensor in defs.sensors}


def test_dagster_job_launch_queues_a_run_the_daemon_runs_from_the_one_code_location(instance_env, platform_env):
    """`dagster job launch -j <job>` queues a run of the code location `elt_platform`; the daemon (as `elt dev` runs
    it) finds that location under the same name, dequeues the run and it succeeds."""
    job, keys = load_job()
    daemon = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run"],
        cwd=REPO_ROOT,
        env=instance_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        cli("dagster", "job", "launch", "-j", job, env=instance_env)
        with dg.DagsterInstance.from_config(instance_env["DAGSTER_HOME"]) as instance:
            deadline = time.monotonic() + 240
            while True:
                [run] = instance.get_runs(limit=1)
                if run.is_finished or time.monotonic() > deadline:
                    break
                time.sleep(1)
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
    assert run.remote_job_origin.location_name == CODE_LOCATION
    assert run.status == dg.DagsterRunStatus.SUCCESS, run.status
    assert rows_loaded(platform_env / "warehouse" / "dev.duckdb", keys) > 0


def test_dg_launch_materializes_in_process(instance_env, platform_env):
    # `--job`: `--assets <key>` would also select dbt's source tests on the assets, a dbt step more
    job, keys = load_job()
    cli("dg", "launch", "--job", job, env=instance_env)
    assert rows_loaded(platform_env / "warehouse" / "dev.duckdb", keys) > 0
