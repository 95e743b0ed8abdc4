"""The deployment files: the production instance config against a real PostgreSQL, the image's build steps
(deploy/build-image.sh in a temp copy of the repository), hadolint on the Dockerfile, the compose file against the
compose-spec schema, dagster_cloud.yaml against Dagster+'s own model, the Helm values against deploy/dagster.yaml,
and `elt serve`'s refusals (a port taken, an unreachable instance database)."""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import pytest
import yaml
from dagster_cloud_cli.config.models import load_dagster_cloud_yaml

from extract.local_postgres import LocalPostgres
from orchestration.lib.environment import REPO_ROOT, resolve
from orchestration.serve import LocalProcessRunLauncher

BIN = Path(sys.executable).parent
DEPLOY = REPO_ROOT / "deploy"


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def instance_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The DAGSTER_PG_* settings of a real PostgreSQL (pgserver) with an empty `dagster` database."""
    import psycopg

    with LocalPostgres(tmp_path_factory.mktemp("instance_pg")) as postgres:
        with psycopg.connect(postgres.url, autocommit=True) as conn:
            conn.execute("create database dagster")
        url = urlsplit(postgres.url)
        yield {
            "DAGSTER_PG_HOST": url.hostname,
            "DAGSTER_PG_PORT": str(url.port),
            "DAGSTER_PG_USER": url.username,
            "DAGSTER_PG_PASSWORD": url.password,
            "DAGSTER_PG_DB": "dagster",
            "PGSSLMODE": "disable",
            "DAGSTER_DEQUEUE_INTERVAL_SECONDS": "5",
        }


def instance_home(tmp_path: Path, config: Path) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(config, home / "dagster.yaml")
    return home


def test_the_deploy_instance_config_loads_on_postgres_with_queue_pool_monitoring_and_retries(
    instance_db, tmp_path, monkeypatch
):
    for name, value in instance_db.items():
        monkeypatch.setenv(name, value)
    with dg.DagsterInstance.from_config(str(instance_home(tmp_path, DEPLOY / "dagster.yaml"))) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert isinstance(instance.run_launcher, LocalProcessRunLauncher)
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 4
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
        assert instance.event_log_storage.get_concurrency_info("duckdb_warehouse").limit == 1
        assert instance.run_monitoring_enabled and instance.run_launcher.supports_check_run_worker_health
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 1
        assert instance.telemetry_enabled is False
        # the storage really is the database the settings name: a run written here is read back over SQL
        run = instance.create_run_for_job(dg.GraphDefinition(name="probe", node_defs=[]).to_job())
        assert instance.get_run_by_id(run.run_id) is not None
        # storing an event sends `NOTIFY run_events` (it fails on the psycopg 3 driver: the scheme pins psycopg2)
        instance.report_engine_event("probe event", run)
        assert [e.message for e in instance.all_logs(run.run_id)] == ["probe event"]


def test_the_deploy_instance_names_every_setting_it_reads_by_env_var(instance_db, tmp_path, monkeypatch):
    """Each connection setting comes from the environment: without DAGSTER_PG_HOST the config is refused,
    naming it."""
    for name, value in instance_db.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DAGSTER_PG_HOST")
    with pytest.raises(Exception, match="DAGSTER_PG_HOST"):
        dg.DagsterInstance.from_config(str(instance_home(tmp_path, DEPLOY / "dagster.yaml")))
    text = (DEPLOY / "dagster.yaml").read_text()
    assert "password: {env: DAGSTER_PG_PASSWORD}" in text


def test_run_monitoring_marks_failed_a_started_run_whose_worker_pid_is_gone(instance_db, tmp_path, monkeypatch):
    """What the daemon's run monitoring does with LocalProcessRunLauncher (deploy/dagster.yaml) when a run worker
    died with its code server (so no code server reports it): Dagster's own `monitor_started_run` asks the
    launcher, which judges the pid the worker recorded."""
    from dagster._core.events import DagsterEvent, DagsterEventType, EngineEventData
    from dagster._daemon.monitoring.run_monitoring import monitor_started_run

    for name, value in instance_db.items():
        monkeypatch.setenv(name, value)
    with dg.DagsterInstance.from_config(str(instance_home(tmp_path, DEPLOY / "dagster.yaml"))) as instance:
        job = dg.GraphDefinition(name="probe", node_defs=[]).to_job()

        def started_run(pid: int) -> str:
            run = instance.create_run_for_job(job)
            instance.report_dagster_event(
                DagsterEvent(DagsterEventType.RUN_START.value, job_name=run.job_name), run_id=run.run_id
            )
            instance.report_engine_event(f"Started process for run (pid: {pid}).", run, EngineEventData.in_process(pid))
            assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED
            return run.run_id

        dead = subprocess.Popen(["sleep", "60"])
        dead.kill()
        dead.wait()
        dead_run, live_run = started_run(dead.pid), started_run(os.getpid())
        for run_id in (dead_run, live_run):
            monitor_started_run(instance, None, instance.get_run_record_by_id(run_id), logging.getLogger("test"))
        assert instance.get_run_by_id(live_run).status == dg.DagsterRunStatus.STARTED
        assert instance.get_run_by_id(dead_run).status == dg.DagsterRunStatus.FAILURE
        messages = [entry.message for entry in instance.all_logs(dead_run)]
        assert any(f"run worker process (pid {dead.pid}) is gone" in m and "Marking run" in m for m in messages)


def test_the_docker_instance_is_the_deploy_instance_with_the_docker_run_launcher(instance_db, tmp_path, monkeypatch):
    base, docker = load(DEPLOY / "dagster.yaml"), load(DEPLOY / "docker" / "dagster.yaml")
    assert {k: v for k, v in base.items() if k != "run_launcher"} == {
        k: v for k, v in docker.items() if k != "run_launcher"
    }
    assert docker["run_launcher"]["class"] == "DockerRunLauncher"
    for name, value in {**instance_db, "ELT_IMAGE": "elt-platform:latest", "ELT_DOCKER_NETWORK": "elt"}.items():
        monkeypatch.setenv(name, value)
    with dg.DagsterInstance.from_config(str(instance_home(tmp_path, DEPLOY / "docker" / "dagster.yaml"))) as instance:
        assert type(instance.run_launcher).__name__ == "DockerRunLauncher"
        assert instance.run_launcher.image == "elt-platform:latest"
        assert instance.run_launcher.supports_check_run_worker_health


def test_dg_check_defs_passes_with_the_deploy_instance(instance_db, tmp_path):
    home = instance_home(tmp_path, DEPLOY / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELT_")}
    env |= instance_db | {"DAGSTER_HOME": str(home), "ELT_DATA_DIR": str(tmp_path / "data")}
    result = subprocess.run(
        [str(BIN / "dg"), "check", "defs"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_hadolint_passes_the_dockerfile():
    result = subprocess.run(
        [str(BIN / "hadolint"), "--failure-threshold", "info", "Dockerfile"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dockerfile_runs_the_build_script_as_a_non_root_user():
    lines = [line.strip() for line in (REPO_ROOT / "Dockerfile").read_text().splitlines()]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and all(not user.startswith(("0", "root")) for user in users)
    assert lines.index(f"USER {users[0]}") < lines.index("RUN deploy/build-image.sh /app")
    assert "uv sync --frozen" in (DEPLOY / "build-image.sh").read_text()
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert {".venv", "data", ".env", "dbt_project/target"} <= set(ignored)


@pytest.mark.slow
def test_the_image_build_script_installs_from_the_lock_prepares_the_manifest_and_finds_the_binaries(tmp_path):
    """deploy/build-image.sh, what the Dockerfile RUNs, in a copy of the repository's files (as `COPY . .` sees
    them) with its own virtual environment."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    app = tmp_path / "app"
    for name in files:
        source = REPO_ROOT / name
        if source.is_file():
            (app / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, app / name)
    assert not (app / "dbt_project" / "target").exists()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ELT_", "VIRTUAL_ENV", "SLING_", "DUCKDB_"))}
    env["UV_PROJECT_ENVIRONMENT"] = str(tmp_path / "venv")
    result = subprocess.run(
        ["bash", str(app / "deploy" / "build-image.sh"), str(app)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (app / "dbt_project" / "target" / "manifest.json").stat().st_size > 0
    assert re.search(r"^sling: .*sling_linux_amd64.*: .*\d+\.\d+", result.stdout, re.M), result.stdout
    assert re.search(r"^duckdb: .*duckdb_cli/duckdb: v1\.5\.5", result.stdout, re.M), result.stdout
    assert not (tmp_path / "venv" / "bin" / "pytest").exists()  # no dev group in the image


def test_the_compose_file_is_valid_and_wires_the_topology():
    result = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", "docker-compose.yaml"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    compose = load(REPO_ROOT / "docker-compose.yaml")
    services = compose["services"]
    assert set(services) == {"postgres", "code_server", "webserver", "daemon"}
    workspace = load(DEPLOY / "docker" / "workspace.yaml")["load_from"][0]["grpc_server"]
    code_server = services["code_server"]["command"]
    assert workspace["host"] == "code_server" and str(workspace["port"]) == code_server[code_server.index("-p") + 1]
    for name in ("webserver", "daemon"):
        command = services[name]["command"]
        assert command[command.index("-w") + 1] == "/app/deploy/docker/workspace.yaml"
        assert "./deploy/docker/dagster.yaml:/opt/dagster/home/dagster.yaml:ro" in services[name]["volumes"]
    assert "/var/run/docker.sock:/var/run/docker.sock" in services["daemon"]["volumes"]
    env = services["daemon"]["environment"]
    assert env["DAGSTER_PG_HOST"] == "postgres" and env["ELT_DOCKER_NETWORK"] in compose["networks"]["elt"]["name"]
    launcher = load(DEPLOY / "docker" / "dagster.yaml")["run_launcher"]["config"]
    for volume in launcher["container_kwargs"]["volumes"]:
        name = volume.split(":")[0]
        assert compose["volumes"][name]["name"] == name  # the run containers mount the same named volumes
    assert set(launcher["env_vars"]) >= {"DAGSTER_PG_HOST", "DAGSTER_PG_PASSWORD", "ELT_ENV", "ELT_PROD_DATABASE"}


def test_dagster_cloud_yaml_is_valid_and_names_the_one_code_location():
    config = load_dagster_cloud_yaml((REPO_ROOT / "dagster_cloud.yaml").read_text())
    [location] = config.locations
    project = load_toml(REPO_ROOT / "pyproject.toml")
    assert location.location_name == project["tool"]["dg"]["project"]["code_location_name"]
    assert location.code_source.module_name == project["tool"]["dagster"]["module_name"]


def test_dagster_cloud_deployments_map_onto_the_environments():
    """What Dagster+ sets in a code location's environment (the variables orchestration/lib/environment.py reads)."""
    prod = resolve({"DAGSTER_CLOUD_DEPLOYMENT_NAME": "prod", "ELT_PROD_DATABASE": "md:analytics"})
    assert (prod.name, prod.warehouse) == ("prod", "md:analytics")
    branch = resolve(
        {
            "DAGSTER_CLOUD_DEPLOYMENT_NAME": "pr-42",
            "DAGSTER_CLOUD_IS_BRANCH_DEPLOYMENT": "1",
            "DAGSTER_CLOUD_PULL_REQUEST_ID": "42",
            "ELT_PROD_DATABASE": "md:analytics",
        }
    )
    assert (branch.name, branch.warehouse, branch.branch_id) == ("branch", "md:analytics_clone_42", "42")


def load_toml(path: Path) -> dict:
    import tomllib

    return tomllib.loads(path.read_text())


def test_the_helm_values_match_the_deploy_instance():
    """The chart writes its own dagster.yaml from these values; they must say what deploy/dagster.yaml says.
    (The chart's values schema is not available offline: the keys are asserted here.)"""
    values, base = load(DEPLOY / "helm" / "values.yaml"), load(DEPLOY / "dagster.yaml")
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["enabled"] is False and values["generatePostgresqlPasswordSecret"] is False
    scheme = base["storage"]["postgres"]["postgres_db"]["scheme"]
    assert values["postgresql"]["postgresqlScheme"] == scheme == "postgresql+psycopg2"
    assert values["concurrency"]["pools"]["defaultLimit"] == base["concurrency"]["pools"]["default_limit"] == 1
    assert values["concurrency"]["runs"]["maxConcurrentRuns"] == base["concurrency"]["runs"]["max_concurrent_runs"]
    daemon = values["dagsterDaemon"]
    assert daemon["runCoordinator"] == {
        "enabled": True,
        "type": "QueuedRunCoordinator",
        "config": {"queuedRunCoordinator": {"dequeueIntervalSeconds": 5}},
    }
    assert daemon["runMonitoring"]["enabled"] is base["run_monitoring"]["enabled"] is True
    assert daemon["runRetries"] == {"enabled": True, "maxRetries": base["run_retries"]["max_retries"]}
    assert values["telemetry"] == {"enabled": False} == base["telemetry"]
    [deployment] = values["dagster-user-deployments"]["deployments"]
    args = deployment["codeServerArgs"]
    assert args[args.index("-m") + 1] == "orchestration.definitions"
    env = {item["name"]: item["value"] for item in deployment["env"]}
    assert env["ELT_ENV"] == "prod" and env["ELT_PROD_DATABASE"].startswith("md:")  # the warehouse on MotherDuck


def test_the_readme_deploying_section_names_every_variable_the_deploy_files_read():
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("## Deploying") :]
    section = section[: section.index("\n## ", 4)] if "\n## " in section[4:] else section
    read = set()
    for path in (DEPLOY / "dagster.yaml", DEPLOY / "docker" / "dagster.yaml", REPO_ROOT / "docker-compose.yaml"):
        read |= set(re.findall(r"\{env: (\w+)\}", path.read_text()))
        read |= set(re.findall(r"\$\{(\w+):[?-]", path.read_text()))
    missing = sorted(name for name in read if f"`{name}`" not in section)
    assert not missing, f"README's Deploying section does not name {missing}"


def _busy_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def elt_serve(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "elt"), "serve", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_elt_serve_refuses_a_port_in_use_naming_the_option(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ELT_", "DAGSTER_"))}
    env |= {"ELT_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "250"}
    with _busy_port() as busy:
        port = busy.getsockname()[1]
        result = elt_serve("--port", str(port), env=env)
    assert result.returncode != 0
    assert f"port 127.0.0.1:{port} is already in use: choose another with --port (ELT_SERVE_PORT)" in result.stderr
    assert not (tmp_path / "data" / "serve" / "postgres").exists()  # nothing was started


def test_elt_serve_refuses_an_unreachable_instance_database_naming_the_settings(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ELT_", "DAGSTER_"))}
    env |= {
        "ELT_DATA_DIR": str(tmp_path / "data"),
        "COLUMNS": "250",
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": str(closed_port),
        "DAGSTER_PG_USER": "dagster",
        "DAGSTER_PG_PASSWORD": "not-shown-anywhere",
        "DAGSTER_PG_DB": "dagster",
    }
    result = elt_serve("--port", "0", "--grpc-port", "0", env=env)
    assert result.returncode != 0
    assert f"the Dagster instance database 127.0.0.1:{closed_port}/dagster (DAGSTER_PG_HOST" in result.stderr
    assert "is unreachable" in result.stderr and "not-shown-anywhere" not in result.stderr + result.stdout
    half = {k: v for k, v in env.items() if k != "DAGSTER_PG_PASSWORD"}
    result = elt_serve("--port", "0", "--grpc-port", "0", env=half)
    assert "half configured: set DAGSTER_PG_PASSWORD too" in result.stderr
