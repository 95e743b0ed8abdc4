"""`elt serve`: Dagster's production topology on one machine, over a PostgreSQL instance database.

Three long-running processes, as a deployment runs them: a code server (`dagster code-server start`, the code
location `elt_platform`), the webserver and the daemon, both reaching the code server through a workspace file with
its `grpc_server`. The instance is `deploy/dagster.yaml` (PostgreSQL storage, the queued run coordinator, the
`duckdb_warehouse` pool at limit 1, run monitoring and retries), copied into `<ELT_DATA_DIR>/serve/dagster`.
Its database is the one the `DAGSTER_PG_*` variables name, else a local PostgreSQL (the `pgserver` wheel's
binaries, extract/local_postgres.py) kept under `<ELT_DATA_DIR>/serve/postgres` and started and stopped with the
topology.

SIGINT / SIGTERM stop the three children (SIGTERM, then SIGKILL after a grace period) and the local PostgreSQL;
a child that exits on its own stops the rest and `elt serve` exits non-zero naming it.

`LocalProcessRunLauncher` is the run launcher `deploy/dagster.yaml` names: Dagster's `DefaultRunLauncher` (one run
worker process per run, started by the code server) plus the worker health check that `DefaultRunLauncher` does not
offer in Dagster 1.13. A killed worker is normally reported at once by the code server that started it (Dagster's
`_check_for_orphaned_runs`); when the code server died with it (its host restarted, it was killed), run monitoring
asks this launcher, finds the pid gone, marks the run failed and run retries launch it again.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, WorkerStatus
from dagster._serdes import ConfigurableClassData

from orchestration.lib.environment import REPO_ROOT, EnvironmentConfigError, resolve
from orchestration.lib.runs import process_gone, run_process

if TYPE_CHECKING:  # imported when `elt serve` starts one: the run launcher above loads with every instance
    from extract.local_postgres import LocalPostgres

DEPLOY_DAGSTER_YAML = REPO_ROOT / "deploy" / "dagster.yaml"
CODE_LOCATION = "elt_platform"
PG_SETTINGS = ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB")
# settings of deploy/dagster.yaml that `elt serve` fills in when unset (a deployment sets them)
QUEUE_DEFAULTS = {"DAGSTER_DEQUEUE_INTERVAL_SECONDS": "5"}
LOCAL_PG_DB = "dagster"
BIN = Path(sys.executable).parent
STOP_GRACE_S = 30.0


class ServeError(EnvironmentConfigError):
    """`elt serve` cannot start: the message names the setting or option at fault."""


class LocalProcessRunLauncher(DefaultRunLauncher):
    """DefaultRunLauncher whose run workers run monitoring can check: a worker is dead when the pid Dagster
    recorded for the run (its "Started process for run" engine event) is gone or now names a newer process.

    The check sees this machine's processes only, so the daemon must run on the host of the code server (as in
    `elt serve`); containers and pods use DockerRunLauncher / K8sRunLauncher, which check their own workers."""

    def __init__(self, inst_data: ConfigurableClassData | None = None) -> None:
        super().__init__(inst_data=inst_data)

    @classmethod
    def config_type(cls) -> dict:
        return {}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping) -> LocalProcessRunLauncher:
        return cls(inst_data=inst_data)

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run) -> CheckRunHealthResult:
        process = run_process(self._instance, run)
        if process is None:  # its worker has not recorded its pid yet: starting, judged by start_timeout_seconds
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no run worker pid recorded yet")
        if process_gone(process):
            return CheckRunHealthResult(
                WorkerStatus.FAILED, f"run worker process (pid {process.pid}) is gone: killed or out of memory"
            )
        return CheckRunHealthResult(WorkerStatus.RUNNING)


@dataclass(frozen=True)
class ServePorts:
    host: str
    webserver: int
    code_server: int


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def check_ports(ports: ServePorts) -> None:
    for option, port in (
        ("--port (ELT_SERVE_PORT)", ports.webserver),
        ("--grpc-port (ELT_SERVE_GRPC_PORT)", ports.code_server),
    ):
        if not port_is_free(ports.host, port):
            raise ServeError(f"port {ports.host}:{port} is already in use: choose another with {option}")


def check_postgres(environ: Mapping[str, str]) -> None:
    """Connect once to the configured instance database; the error names the DAGSTER_PG_* settings, never the
    password."""
    import psycopg

    where = f"{environ['DAGSTER_PG_HOST']}:{environ['DAGSTER_PG_PORT']}/{environ['DAGSTER_PG_DB']}"
    try:
        psycopg.connect(
            host=environ["DAGSTER_PG_HOST"],
            port=environ["DAGSTER_PG_PORT"],
            user=environ["DAGSTER_PG_USER"],
            password=environ["DAGSTER_PG_PASSWORD"],
            dbname=environ["DAGSTER_PG_DB"],
            connect_timeout=5,
        ).close()
    except psycopg.Error as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ServeError(
            f"the Dagster instance database {where} (DAGSTER_PG_HOST, DAGSTER_PG_PORT, DAGSTER_PG_DB, "
            f"DAGSTER_PG_USER, DAGSTER_PG_PASSWORD) is unreachable: {reason}"
        ) from None


def configured_postgres(environ: Mapping[str, str]) -> bool:
    """True when the DAGSTER_PG_* settings name a database; a partial set is an error naming what is missing."""
    given = [name for name in PG_SETTINGS if environ.get(name)]
    if not given:
        return False
    missing = [name for name in PG_SETTINGS if not environ.get(name)]
    if missing:
        raise ServeError(f"the Dagster instance database is half configured: set {', '.join(missing)} too")
    return True


def write_instance(home: Path) -> Path:
    """`deploy/dagster.yaml` as the instance config of `elt serve` (rewritten at every start: the repo's file is
    the one to edit)."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DEPLOY_DAGSTER_YAML, home / "dagster.yaml")
    return home


def write_workspace(path: Path, ports: ServePorts) -> Path:
    path.write_text(
        "# Written by `elt serve`: the webserver and the daemon reach the code server over gRPC.\n"
        "load_from:\n"
        "  - grpc_server:\n"
        f"      host: {ports.host}\n"
        f"      port: {ports.code_server}\n"
        f"      location_name: {CODE_LOCATION}\n"
    )
    return path


def wait_for_code_server(ports: ServePorts, process: subprocess.Popen, log: Path, timeout_s: float = 300.0) -> None:
    from dagster._api.list_repositories import sync_list_repositories_grpc
    from dagster._core.errors import DagsterUserCodeProcessError
    from dagster._grpc.client import DagsterGrpcClient

    client = DagsterGrpcClient(host=ports.host, port=ports.code_server)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServeError(f"the code server exited ({process.returncode}) while loading the definitions: see {log}")
        try:
            client.ping("")
        except Exception:  # not listening yet
            time.sleep(0.5)
            continue
        try:
            sync_list_repositories_grpc(client)
        except DagsterUserCodeProcessError as error:
            lines = [line for line in str(error).splitlines() if line.strip()]
            raise ServeError(
                f"the code server on {ports.host}:{ports.code_server} could not load the code location "
                f"{CODE_LOCATION}: {lines[0] if lines else error} (the trace is in {log})"
            ) from None
        return
    raise ServeError(f"the code server did not answer on {ports.host}:{ports.code_server} in {timeout_s:.0f} s")


def stop_processes(processes: list[tuple[str, subprocess.Popen]], say) -> None:
    """SIGTERM each child (its own process group: the code server's run workers too), SIGKILL after the grace."""
    for _name, process in reversed(processes):
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + STOP_GRACE_S
    for name, process in reversed(processes):
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"{name} did not stop in {STOP_GRACE_S:.0f} s: killing it")
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()


def serve(host: str, port: int, grpc_port: int, say=print) -> int:
    """Run the topology until SIGINT / SIGTERM (returns 0) or until a child exits (returns 1)."""
    from extract.local_postgres import LocalPostgres

    env = resolve()
    ports = ServePorts(host, port, grpc_port)
    check_ports(ports)
    serve_dir = env.data_dir / "serve"
    home = write_instance(serve_dir / "dagster")
    workspace = write_workspace(serve_dir / "workspace.yaml", ports)
    child_env = {**os.environ, **env.env_for_subprocess(), "DAGSTER_HOME": str(home)}
    for name, default in QUEUE_DEFAULTS.items():
        child_env.setdefault(name, default)

    postgres = None
    processes: list[tuple[str, subprocess.Popen]] = []
    try:
        if configured_postgres(child_env):
            check_postgres(child_env)
            pg = f"{child_env['DAGSTER_PG_HOST']}:{child_env['DAGSTER_PG_PORT']}/{child_env['DAGSTER_PG_DB']}"
            say(f"instance database: {pg}")
        else:
            postgres = start_local_postgres(LocalPostgres(serve_dir / "postgres"))
            child_env.update(postgres_settings(postgres))
            pg = f"{postgres.host}:{postgres.port}/{LOCAL_PG_DB}"
            say(f"instance database: local PostgreSQL {pg} ({postgres.data_dir})")
        logs = serve_dir / "logs"
        logs.mkdir(exist_ok=True)

        def start(name: str, *command: str) -> subprocess.Popen:
            log = open(logs / f"{name}.log", "ab")  # kept open for the child's life
            process = subprocess.Popen(
                [str(BIN / command[0]), *command[1:]],
                cwd=REPO_ROOT,
                env=child_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # stopped by us, in order, not by the terminal's Ctrl-C
            )
            processes.append((name, process))
            return process

        code_server = start(
            "code-server",
            "dagster", "code-server", "start",
            "-h", host, "-p", str(grpc_port),
            "-m", "orchestration.definitions", "--location-name", CODE_LOCATION,
        )  # fmt: skip
        wait_for_code_server(ports, code_server, logs / "code-server.log")
        say(f"code server: {host}:{grpc_port} (code location {CODE_LOCATION})")
        start("webserver", "dagster-webserver", "-h", host, "-p", str(port), "-w", str(workspace))
        start("daemon", "dagster-daemon", "run", "-w", str(workspace))
        say(f"webserver: http://{host}:{port}  daemon: running  env: {env.name} ({env.warehouse})")
        say(f"logs: {logs}")
        while True:
            for name, process in processes:
                if process.poll() is not None:
                    say(f"{name} exited with {process.returncode} (see {logs / (name + '.log')}): stopping")
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        say("stopping: code server, webserver, daemon" + (", local PostgreSQL" if postgres else ""))
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            stop_processes(processes, say)
        finally:
            if postgres is not None:
                postgres.stop()


def start_local_postgres(postgres: LocalPostgres) -> LocalPostgres:
    """Start the local instance database (initdb on first use) and create the `dagster` database once."""
    import psycopg

    postgres.start()
    try:
        with psycopg.connect(postgres.url, autocommit=True) as conn:
            if not conn.execute("select 1 from pg_database where datname = %s", (LOCAL_PG_DB,)).fetchone():
                conn.execute(f"create database {LOCAL_PG_DB}")
    except psycopg.OperationalError as error:
        postgres.stop()
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ServeError(
            f"the local instance database in {postgres.data_dir} refused its superuser {postgres.superuser} "
            f"({reason}); if the cluster there was made with another superuser, move the folder away and "
            "`elt serve` makes a new one (the run history stays in the old folder)"
        ) from None
    return postgres


def postgres_settings(postgres: LocalPostgres) -> dict[str, str]:
    from urllib.parse import urlsplit

    url = urlsplit(postgres.url)
    return {
        "DAGSTER_PG_HOST": url.hostname or postgres.host,
        "DAGSTER_PG_PORT": str(url.port),
        "DAGSTER_PG_USER": url.username or "",
        "DAGSTER_PG_PASSWORD": url.password or "",
        "DAGSTER_PG_DB": LOCAL_PG_DB,
        "PGSSLMODE": "disable",
    }
