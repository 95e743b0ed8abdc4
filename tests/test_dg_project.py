"""The repository is a dg project with one code location, `elt_platform`, whichever CLI loads it: `dg list defs`,
`dg launch` and `dagster job launch` see the definitions `load_definitions()` gives."""

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
    daemon = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run"],
        cwd=REPO_ROOT,
        env=instance_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        cli("dagster", "job", "launch", "-j", "hackernews_load", env=instance_env)
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
    with duckdb.connect(str(platform_env / "warehouse" / "dev.duckdb"), read_only=True) as con:
        assert con.sql("select count(*) from raw_hackernews.items").fetchone()[0] > 0


def test_dg_launch_materializes_in_process(instance_env, platform_env):
    # `--job` of one asset: `--assets raw_hackernews/items` also selects dbt's source tests on it, a dbt step more
    cli("dg", "launch", "--job", "hackernews_load", env=instance_env)
    with duckdb.connect(str(platform_env / "warehouse" / "dev.duckdb"), read_only=True) as con:
        assert con.sql("select count(*) from raw_hackernews.items").fetchone()[0] > 0
