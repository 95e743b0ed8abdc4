"""dbt in a branch clone: slim CI against prod's manifest, which travels inside the warehouse.

Prod publishes its manifest into its own warehouse (`elt_meta.dbt_prod_manifest`, orchestration/lib/meta.py) after
a build, so every clone carries exactly the state it was cloned from: no artifact store, the same on MotherDuck and
on files, and never a manifest newer or older than the data beside it.
"""

from __future__ import annotations

from pathlib import Path

from orchestration.lib.dbt import DbtResult, run_dbt
from orchestration.lib.environment import DBT_PROJECT_DIR, Environment, EnvironmentConfigError, open_for_write
from orchestration.lib.meta import read_prod_state


def work_dir(env: Environment) -> Path:
    """A branch's local dbt target and state, apart from the project's own target/ that dagster-dbt uses."""
    return env.data_dir / "branches" / (env.branch_id or env.name)


def _run_in_clone(env: Environment, args: list[str], project_dir: Path) -> DbtResult:
    if env.name != "branch":
        raise EnvironmentConfigError(f"branch commands run in the branch env, not {env.name}")
    open_for_write(env, env.warehouse)
    return run_dbt(env, args, project_dir, work_dir(env) / "target")


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
    return _run_in_clone(env, args, project_dir)


def build_branch(
    env: Environment, project_dir: Path = DBT_PROJECT_DIR, state_dir: Path | None = None, full: bool = False
) -> tuple[DbtResult, Path | None]:
    """`dbt build --target branch` in the clone: the models the PR changed and everything downstream of them."""
    state = None if full else prod_state(env, state_dir)
    return _run_in_clone(env, ["build", *slim_selection(state)], project_dir), state
