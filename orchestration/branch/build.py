"""dbt in a branch clone: slim CI against prod's manifest, which travels inside the warehouse.

Prod publishes its manifest into its own warehouse (`elt_meta.dbt_prod_manifest`) after a build, so every clone
carries exactly the state it was cloned from: no artifact store, the same on MotherDuck and on files, and never a
manifest newer or older than the data beside it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import duckdb

from orchestration.branch.clones import META_SCHEMA, quote, table_exists
from orchestration.environment import DBT_PROJECT_DIR, REPO_ROOT, Environment, EnvironmentConfigError, open_for_write

PROD_MANIFEST_TABLE = "dbt_prod_manifest"


def publish_prod_state(env: Environment, manifest_path: Path) -> None:
    """After a prod dbt build: store its manifest in the prod warehouse, where every later clone finds it."""
    if env.name != "prod":
        raise EnvironmentConfigError(f"only prod publishes dbt state (this is {env.name}): run with ELT_ENV=prod")
    manifest = manifest_path.read_text()
    json.loads(manifest)  # a truncated file must not become the state every PR is compared against
    with duckdb.connect(open_for_write(env, env.warehouse)) as con:
        con.execute(f"create schema if not exists {META_SCHEMA}")
        con.execute(
            f"create or replace table {META_SCHEMA}.{PROD_MANIFEST_TABLE} as "
            "select ?::varchar as manifest, now()::timestamptz as published_at",
            [manifest],
        )


def read_prod_state(location: str, state_dir: Path) -> Path | None:
    """Write the manifest a clone carries to `state_dir/manifest.json`; None when prod never published one."""
    read_only = not location.startswith("md:")
    with duckdb.connect(location, read_only=read_only) as con:
        catalog = con.execute("select current_database()").fetchone()[0]
        if not table_exists(con, catalog, META_SCHEMA, PROD_MANIFEST_TABLE):
            return None
        manifest = con.execute(f"select manifest from {quote(catalog)}.{META_SCHEMA}.{PROD_MANIFEST_TABLE}").fetchone()
    if not manifest:
        return None
    shutil.rmtree(state_dir, ignore_errors=True)
    state_dir.mkdir(parents=True)
    (state_dir / "manifest.json").write_text(manifest[0])
    return state_dir


def work_dir(env: Environment) -> Path:
    """A branch's local dbt target and state, apart from the project's own target/ that dagster-dbt uses."""
    return env.data_dir / "branches" / (env.branch_id or env.name)


@dataclass(frozen=True)
class DbtResult:
    command: list[str]
    returncode: int
    statuses: dict[str, int]  # run_results status -> nodes
    failed: list[str]  # unique ids of nodes that errored or failed
    selected: list[str]  # unique ids that ran

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run_dbt(env: Environment, args: list[str], project_dir: Path, target_path: Path) -> DbtResult:
    """`dbt <args>` on this environment's target; dbt's own output goes to this process's stdout (CI logs)."""
    if env.name == "branch":
        open_for_write(env, env.warehouse)
    (target_path / "run_results.json").unlink(missing_ok=True)  # a failed start must not report old results
    command = [
        str(Path(sys.executable).parent / "dbt"),
        *args,
        "--project-dir",
        str(project_dir),
        "--profiles-dir",
        str(REPO_ROOT),
        "--target",
        env.dbt_target,
        "--target-path",
        str(target_path),
        "--log-path",
        str(target_path),
    ]
    sys.stdout.flush()
    process = subprocess.run(command, cwd=REPO_ROOT, env={**os.environ, **env.env_for_subprocess()}, check=False)
    results_path = target_path / "run_results.json"
    results = json.loads(results_path.read_text())["results"] if results_path.exists() else []
    return DbtResult(
        command=command,
        returncode=process.returncode,
        statuses=dict(Counter(result["status"] for result in results)),
        failed=sorted(result["unique_id"] for result in results if result["status"] in ("error", "fail")),
        selected=sorted(result["unique_id"] for result in results),
    )


def slim_selection(state_dir: Path | None) -> list[str]:
    """`state:modified+` against prod's manifest when there is one, everything otherwise."""
    return ["--select", "state:modified+", "--state", str(state_dir)] if state_dir else []


def prod_state(env: Environment, state_dir: Path | None) -> Path | None:
    """An explicit `--state` dir, else the manifest the clone carries."""
    if state_dir is not None:
        if not (state_dir / "manifest.json").exists():
            raise EnvironmentConfigError(f"--state {state_dir}: no manifest.json there (a prod dbt target folder)")
        return state_dir
    return read_prod_state(env.warehouse, work_dir(env) / "prod_state")


def repoint_views(env: Environment, project_dir: Path = DBT_PROJECT_DIR, state_dir: Path | None = None) -> DbtResult:
    """Recreate the clone's views in the clone. A copied view still names prod's database (dbt writes fully
    qualified names): on a file it breaks, on MotherDuck it silently reads prod. Views the PR changed are left
    to `build`, which rebuilds them with everything downstream."""
    state = prod_state(env, state_dir)
    args = ["run", "--select", "config.materialized:view"]
    if state:
        args += ["--exclude", "state:modified+", "--state", str(state)]
    return run_dbt(env, args, project_dir, work_dir(env) / "target")


def build_branch(
    env: Environment, project_dir: Path = DBT_PROJECT_DIR, state_dir: Path | None = None, full: bool = False
) -> tuple[DbtResult, Path | None]:
    """`dbt build --target branch` in the clone: the models the PR changed and everything downstream of them."""
    if env.name != "branch":
        raise EnvironmentConfigError(f"branch build runs in the branch env, not {env.name}")
    state = None if full else prod_state(env, state_dir)
    return run_dbt(env, ["build", *slim_selection(state)], project_dir, work_dir(env) / "target"), state
