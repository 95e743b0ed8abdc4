"""The one way the platform runs dbt: dagster-dbt's `DbtCliResource`, pointed at the resolved environment.

Dagster's dbt assets (defs/dbt), the manifest preparation and the `elt branch` commands all go through
`WarehouseDbtCliResource`: the same executable, profiles.yml, target and variables everywhere.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections import Counter
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from functools import cached_property
from importlib import metadata
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject
from packaging import version

from extract.tooling import owner_environ, scoped_environ
from orchestration.lib.environment import DBT_PROJECT_DIR, REPO_ROOT, Environment

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=REPO_ROOT)
KEEP_RUN_TARGETS = 5  # dagster-dbt writes target/<op>-<id>/ per run; older ones are pruned
_IGNORED = {"target", "logs", "dbt_packages"}


def dbt_colour_environ() -> dict[str, str]:
    """dbt colours its log whatever it writes to, and dagster-dbt re-emits that log on this process's stdout: colour
    only when that stdout is a terminal and NO_COLOR (no-color.org) is unset. dbt's own log file never gets colour
    codes. A DBT_USE_COLORS or DBT_USE_COLORS_FILE the user set wins."""
    colours = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    wanted = {"DBT_USE_COLORS": "true" if colours else "false", "DBT_USE_COLORS_FILE": "false"}
    return {name: value for name, value in wanted.items() if name not in os.environ}


def _dbt_executable() -> str:
    """The dbt installed beside this Python (a process started without the venv on PATH still finds it)."""
    beside = Path(sys.executable).parent / "dbt"
    return str(beside) if beside.exists() else "dbt"


class WarehouseDbtCliResource(DbtCliResource):
    """dbt, run against the resolved environment: the variables profiles.yml reads are passed to the process."""

    env_vars: dict[str, str] = {}

    @classmethod
    def for_environment(cls, env: Environment, project_dir: Path = DBT_PROJECT_DIR) -> WarehouseDbtCliResource:
        return cls(
            project_dir=str(project_dir),
            profiles_dir=str(REPO_ROOT),
            target=env.dbt_target,
            env_vars=env.env_for_subprocess(),
            dbt_executable=_dbt_executable(),
        )

    def cli(self, args, **kwargs):
        # dagster-dbt builds the subprocess env from os.environ inside cli(); the owner variable lets the next run end
        # a dbt left running by a run killed with SIGKILL (orchestration/lib/runs.py)
        with scoped_environ({**self.env_vars, **owner_environ(), **dbt_colour_environ()}):
            return super().cli(args, **kwargs)

    @cached_property
    def _cli_version(self) -> version.Version:
        """dagster-dbt runs `dbt --version` once per resource, so once per run (about 4 s: dbt's imports); the dbt
        beside this Python is the installed dbt-core, whose version the package metadata gives at once."""
        if Path(self.dbt_executable).parent == Path(sys.executable).parent:
            with suppress(metadata.PackageNotFoundError):
                return version.parse(metadata.version("dbt-core"))
        return super()._cli_version

    def _initialize_dbt_core_adapter(self, args):
        """No in-process dbt adapter: dagster-dbt opens one before every command (about 5 s here) only to fetch row
        counts and column metadata afterwards, which this platform does not ask for (a dbt-duckdb connection held
        open in the run process is the "readers hold the file open" trap). dagster-dbt runs without it."""
        return None


def _newest_source_mtime(project_dir: Path) -> float:
    newest = (REPO_ROOT / "profiles.yml").stat().st_mtime
    for root, dirs, files in os.walk(project_dir):
        dirs[:] = [d for d in dirs if d not in _IGNORED]
        for name in files:
            newest = max(newest, os.stat(os.path.join(root, name)).st_mtime)
    return newest


def ensure_manifest(project: DbtProject = dbt_project) -> Path:
    """The project's manifest, parsed once: again only when it is missing or older than a project file (a
    deployment prepares it at build time, so this is a stat per load). Parsing needs no warehouse."""
    manifest = project.manifest_path
    if manifest.exists() and manifest.stat().st_mtime >= _newest_source_mtime(Path(project.project_dir)):
        return manifest
    dev = Environment(name="dev", warehouse=":memory:", data_dir=REPO_ROOT / "data")
    dbt = WarehouseDbtCliResource.for_environment(dev, Path(project.project_dir))
    invocation = dbt.cli(["parse", "--quiet"], target_path=Path(project.target_path), raise_on_error=False).wait()
    if not invocation.is_successful():
        raise RuntimeError(f"dbt parse of {project.project_dir} failed: {invocation.get_error()}")
    return manifest


def prune_run_targets(project: DbtProject = dbt_project, keep: int = KEEP_RUN_TARGETS) -> None:
    runs = sorted(
        (path for path in Path(project.target_path).glob("*-*") if path.is_dir()),
        key=lambda path: path.stat().st_mtime,
    )
    for path in runs[:-keep]:
        shutil.rmtree(path, ignore_errors=True)


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


def run_dbt(env: Environment, args: Sequence[str], project_dir: Path, target_path: Path) -> DbtResult:
    """`dbt <args>` on this environment's target outside Dagster (the `elt branch` commands); dbt's log goes to
    this process's stdout (CI logs)."""
    (target_path / "run_results.json").unlink(missing_ok=True)  # a failed start must not report old results
    dbt = WarehouseDbtCliResource.for_environment(env, project_dir)
    invocation = dbt.cli(list(args), target_path=target_path, raise_on_error=False)
    for _ in invocation.stream_raw_events():  # re-emitted on stdout by dagster-dbt as they come
        pass
    returncode = invocation.process.wait()
    results_path = target_path / "run_results.json"
    results = invocation.get_artifact("run_results.json")["results"] if results_path.exists() else []
    return DbtResult(
        command=[str(arg) for arg in invocation.process.args],
        returncode=returncode,
        statuses=dict(Counter(result["status"] for result in results)),
        failed=sorted(result["unique_id"] for result in results if result["status"] in ("error", "fail")),
        selected=sorted(result["unique_id"] for result in results),
    )
