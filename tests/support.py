"""What the tests share: the `elt` command in a subprocess, queries and content hashes of a warehouse, free ports,
a scripted HTTP server, copies of the repository and the dbt project, and the manifest's marts. Every test module
imports from here (or from a fixtures module through conftest), never from another test module."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from orchestration.lib.environment import DBT_PROJECT_DIR, REPO_ROOT

ELT = str(Path(sys.executable).parent / "elt")

# the variables that choose the environment or point a source elsewhere: a test starts from none of them
PLATFORM_PREFIXES = ("ELT_", "DAGSTER_CLOUD_", "NASA_API_KEY", "MOTHERDUCK_TOKEN")

# what a copy of the repository leaves out: the venv, local data and dbt's build output
NOT_COPIED = (".venv/", "data/", "dbt_project/target/", "dbt_project/logs/", "dashboards/node_modules/")

# the flag slim CI needs across targets (state:modified compares sources by their unrendered database)
SLIM_FLAG = "state_modified_compare_more_unrendered_values: true"


# ---------------------------------------------------------------- environment and the `elt` command


def use_platform_env(monkeypatch: pytest.MonkeyPatch, data_dir: Path, **variables: str) -> Path:
    """Point this process at a dev environment of its own: `ELT_DATA_DIR=data_dir`, every source on its bundled
    demo, plus `variables`. Definitions loaded afterwards (`load_definitions()`) resolve to it."""
    for name in list(os.environ):
        if name.startswith(PLATFORM_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ELT_DATA_DIR", str(data_dir))
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return data_dir


def clean_environ(**settings: str) -> dict[str, str]:
    """This process's variables without any platform or Dagster-instance setting, plus `settings`."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith((*PLATFORM_PREFIXES, "DAGSTER_HOME"))}
    return {**kept, **settings}


def elt(*args: str, settings: Mapping[str, str], timeout: float = 900, cwd: Path | None = None):
    """`elt <args>` in a subprocess with only `settings` as the platform's variables."""
    return subprocess.run(
        [ELT, *args], capture_output=True, text=True, env=clean_environ(**settings), timeout=timeout, cwd=cwd
    )


# ---------------------------------------------------------------- warehouses


def query(warehouse: Path | str, sql: str) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql).fetchall()


def copy_warehouse(warehouse: Path, folder: Path, name: str | None = None) -> Path:
    """A copy of a DuckDB file in `folder` (created), under its own name unless `name` is given."""
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(warehouse, folder / (name or warehouse.name)))


def table_hashes(location: Path | str) -> dict[str, tuple[int, str]]:
    """Rows and an md5 over every row (sorted by its text) of every base table: content, not timestamps."""
    with duckdb.connect(str(location), read_only=True) as con:
        tables = con.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_type = 'BASE TABLE' and table_catalog = current_database() order by 1, 2"
        ).fetchall()
        return {
            f"{schema}.{table}": con.execute(
                f"select count(*), md5(coalesce(string_agg(row::varchar, '|' order by row::varchar), '')) "
                f'from "{schema}"."{table}" as row'
            ).fetchone()
            for schema, table in tables
        }


def expected_counts(warehouse: Path | str) -> dict[str, int]:
    """Row counts a demo run lands, derived from the inputs: every source's fixtures module says what its demo lands
    (`demo_row_counts(con)`); a source whose module says nothing leaves tables no count matches."""
    expected: dict[str, int] = {}
    modules = sorted(path.stem for path in Path(__file__).parent.glob("fixtures_*.py"))
    with duckdb.connect(str(warehouse), read_only=True) as con:
        for name in modules:
            counts = getattr(importlib.import_module(f"tests.{name}"), "demo_row_counts", None)
            if counts:
                expected.update(counts(con))
    return expected


def relation_content(warehouse: Path | str, schemas: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    """Row count and an order-independent hash of every table and view in `schemas`."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        relations = con.execute(
            "select table_schema, table_name from information_schema.tables "
            f"where table_catalog = current_database() and table_schema in {tuple(schemas) + ('',)} order by 1, 2"
        ).fetchall()
        return {
            f"{schema}.{name}": con.execute(
                f'select count(*), coalesce(sum(hash(t)::hugeint), 0) from "{schema}"."{name}" as t'
            ).fetchone()
            for schema, name in relations
        }


# ---------------------------------------------------------------- pipeline passes


def run_extracts(
    instance: dg.DagsterInstance, selection: dg.AssetSelection, partitions: Mapping[str, list[str]] | None = None
) -> tuple[object, list[str]]:
    """One pass of the pipeline over `selection` (extract assets, no dbt), as `elt run` plans it: its RunSummary and
    the failure descriptions of the steps that failed in it."""
    from orchestration.pipeline import run_pipeline

    before = {record.run_id for record in instance.get_runs()}
    summary = run_pipeline(instance=instance, selection=selection, partitions=partitions, log_level="WARNING")
    failures = []
    for dagster_run in instance.get_runs():
        if dagster_run.run_id in before:
            continue
        for record in instance.all_logs(dagster_run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
            data = record.dagster_event.step_failure_data
            failures.append(data.user_failure_data.description if data.user_failure_data else data.error.message)
    return summary, failures


def variant_columns(warehouse: Path | str, schema: str) -> list[str]:
    """dlt's variant columns (`<column>__v_<type>`) in `schema`: where a value of another type than declared landed."""
    return [
        f"{table}.{column}"
        for table, column in query(
            warehouse,
            f"select table_name, column_name from information_schema.columns where table_schema = '{schema}'",
        )
        if "__v_" in column
    ]


# ---------------------------------------------------------------- prod (Write-Audit-Publish)


def prod_settings(warehouse: Path) -> dict[str, str]:
    """The variables of a prod process whose warehouse is the file `warehouse` (its data dir beside it)."""
    return {"ELT_ENV": "prod", "ELT_PROD_DATABASE": str(warehouse), "ELT_DATA_DIR": str(warehouse.parent / "data")}


def materialize_prod(warehouse: Path, selection: dg.AssetSelection | None = None) -> dg.ExecuteInProcessResult:
    """The dbt build + audit and the publish step of Write-Audit-Publish on the prod file `warehouse`, as a prod
    run materializes them (every model, or `selection`)."""
    from orchestration.defs.dbt.assets import dbt_assets_for
    from orchestration.lib.dbt import WarehouseDbtCliResource
    from orchestration.lib.environment import resolve
    from orchestration.lib.warehouse import WarehouseResource

    env = resolve(prod_settings(warehouse))
    models, publish_step = dbt_assets_for(env)
    resources = {
        "dbt": WarehouseDbtCliResource.for_environment(env),
        "warehouse": WarehouseResource.from_environment(env),
    }
    return dg.materialize([models, publish_step], resources=resources, selection=selection, raise_on_error=False)


# ---------------------------------------------------------------- the dbt project and its manifest


def manifest() -> dict:
    """The project's manifest (prepared when stale, as the definitions do)."""
    from orchestration.lib.dbt import ensure_manifest

    return json.loads(ensure_manifest().read_text())


def mart_models(manifest: Mapping) -> list[dict]:
    """Every model that lands in the `marts` schema, by name: whatever sources the project has."""
    return sorted(
        (node for node in manifest["nodes"].values() if node["resource_type"] == "model" and node["schema"] == "marts"),
        key=lambda node: node["name"],
    )


# the macro that cuts a source to its last days in dev and branch (the dev data window)
DEV_WINDOW_MACRO = ".limit_to_dev_window"


def closure(manifest: dict, unique_id: str, direction: str = "child_map") -> set[str]:
    """Every node downstream (`child_map`) or upstream (`parent_map`) of `unique_id`, itself left out."""
    found, todo = set(), [unique_id]
    while todo:
        for other in manifest[direction].get(todo.pop(), []):
            if other not in found:
                found.add(other)
                todo.append(other)
    return found


def cut_by_the_dev_window(manifest: dict, prod: Path, clone: Path) -> set[str]:
    """Models a branch rebuild does not reproduce as prod has them: in dev and branch a source can be cut to its last
    days (the dev data window). A view `elt branch create` recreated in the clone with fewer rows than prod's is cut
    (so is a table that applies the window itself), and so is every node downstream of one."""
    cut = set()
    for unique_id, node in manifest["nodes"].items():
        if node["resource_type"] != "model" or node["config"]["materialized"] == "ephemeral":
            continue
        if node["config"]["materialized"] == "view":
            name = node.get("alias") or node["name"]
            rows = f'select count(*) from "{node["schema"]}"."{name}"'
            if query(prod, rows) != query(clone, rows):
                cut.add(unique_id)
        elif any(macro.endswith(DEV_WINDOW_MACRO) for macro in node["depends_on"]["macros"]):
            cut.add(unique_id)
    return cut.union(*(closure(manifest, unique_id) for unique_id in cut))


def rebuilt_as_in_prod(manifest: dict, unique_id: str, cut: set[str]) -> bool:
    """The model and everything its branch build runs (models and tests downstream) read only what the branch has as
    prod has it."""
    downstream = {unique_id} | closure(manifest, unique_id)
    read = set().union(*(manifest["parent_map"].get(node, []) for node in downstream)) | downstream
    return not read & cut


def dbt_env(warehouse: Path) -> dict[str, str]:
    """The variables profiles.yml reads, pointing the dev target at `warehouse`."""
    return {"ELT_ENV": "dev", "ELT_DEV_DATABASE": str(warehouse), "ELT_DATA_DIR": str(warehouse.parent)}


def run_dbt(*args: str, warehouse: Path, target_path: Path, env: dict[str, str] | None = None, check: bool = True):
    """dbt from the shell, as a user runs it, with its own target and log folders (the checkout's are shared)."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dbt"), *args, "--project-dir", str(DBT_PROJECT_DIR)]
        + ["--profiles-dir", str(REPO_ROOT), "--target-path", str(target_path)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, **dbt_env(warehouse), "DBT_LOG_PATH": str(target_path / "logs"), **(env or {})},
    )
    if check:
        assert result.returncode == 0, f"dbt {' '.join(args)} failed:\n{result.stdout[-5000:]}\n{result.stderr}"
    return result


def copy_project(target: Path) -> Path:
    """The dbt project as of now, with the flag slim CI needs across targets."""
    shutil.copytree(DBT_PROJECT_DIR, target, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    project_yml = target / "dbt_project.yml"
    text = project_yml.read_text()
    if SLIM_FLAG not in text:
        project_yml.write_text(text.replace("flags:\n", f"flags:\n  {SLIM_FLAG}\n", 1))
    assert SLIM_FLAG in project_yml.read_text()
    return target


def copy_repository(target: Path) -> Path:
    """The files git lists (tracked and untracked, not ignored) as they are in the work tree now."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout.decode()
    for path in filter(None, listed.split("\0")):
        source = REPO_ROOT / path
        if path.startswith(NOT_COPIED) or not source.is_file():  # not a file: deleted in the work tree
            continue
        (target / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target / path)
    return target


# ---------------------------------------------------------------- network


def free_port() -> int:
    """A port free on 127.0.0.1 now (the caller binds it next; tests that start servers retry on a clash)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ScriptedServer:
    base_url: str
    requests: int = 0


@contextmanager
def scripted_server(*responses: tuple) -> Iterator[ScriptedServer]:
    """A tiny HTTP server answering each GET with the next (status, headers, body[, delay seconds]); the last
    response repeats. `.requests` counts the requests it got."""
    queue = list(responses)
    lock = threading.Lock()
    scripted = ScriptedServer(base_url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            with lock:
                scripted.requests += 1
                status, headers, body, *delay = queue.pop(0) if len(queue) > 1 else queue[0]
            time.sleep(delay[0] if delay else 0)
            payload = body.encode()
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client timed out and left

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    scripted.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield scripted
    finally:
        server.shutdown()
        server.server_close()
