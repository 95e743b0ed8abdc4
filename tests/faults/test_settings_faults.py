"""Settings that point a run somewhere it must not or cannot write, through the real tools a user runs.

- `dbt build` by hand with a dev target that is the prod file is refused while dbt reads profiles.yml, before
  dbt-duckdb opens (and so creates) the file: no prod file appears, an existing one stays byte-identical.
- `ELT_DATA_DIR` on a folder that cannot be written ends every `elt` command that writes in one line naming
  ELT_DATA_DIR, the path and the fix, not a traceback. These tests may run as root, for whom a chmod'ed folder is
  still writable, so they use folders that no user can write: a path below a regular file (refused when the
  environment resolves) and a path under /proc (refused when `elt run` first creates the Dagster instance).

Each command spends seconds importing dbt or Dagster, so the module starts them all at once and each test then
checks one command's output and what it left behind.
"""

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pytest

from orchestration.lib.environment import DBT_PROJECT_DIR, REPO_ROOT

BIN = Path(sys.executable).parent
DATA_DIR_FIX = "point ELT_DATA_DIR at a writable folder"
IS_ROOT = os.geteuid() == 0


def _clean_environ(**variables: str) -> dict[str, str]:
    """This process's environment without any platform setting, plus `variables`."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("ELT_", "DAGSTER_CLOUD_", "DAGSTER_HOME"))}
    return {**environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", **variables}


def _fingerprint(path: Path) -> tuple[bytes, int]:
    return hashlib.sha256(path.read_bytes()).digest(), path.stat().st_mtime_ns


@dataclass
class Launched:
    """A command started in the background, with what the test needs to know about its folder."""

    process: subprocess.Popen
    folder: Path
    facts: dict = field(default_factory=dict)

    @cached_property
    def result(self) -> subprocess.CompletedProcess:
        stdout, stderr = self.process.communicate(timeout=180)
        return subprocess.CompletedProcess(self.process.args, self.process.returncode, stdout, stderr)

    @property
    def output(self) -> str:
        return self.result.stdout + self.result.stderr


def _start(args: list[str], cwd: Path, folder: Path, **variables: str) -> Launched:
    process = subprocess.Popen(
        args,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_clean_environ(**variables),
    )
    return Launched(process, folder)


def _dbt_build_by_hand(folder: Path, dev_database: str, prod: Path) -> Launched:
    """`dbt build` from dbt_project/ with the repository's profiles.yml, as a user types it in a shell there."""
    scratch = folder.parent / f"{folder.name}-scratch"  # dbt's target and logs, beside the folder under test
    return _start(
        [str(BIN / "dbt"), "build", "--profiles-dir", str(REPO_ROOT), "--target-path", str(scratch / "target")],
        DBT_PROJECT_DIR,
        folder,
        PWD=str(DBT_PROJECT_DIR),  # what a shell sets after `cd dbt_project`
        ELT_DEV_DATABASE=dev_database,
        ELT_PROD_DATABASE=str(prod),
        DBT_LOG_PATH=str(scratch / "logs"),
    )


def _dbt_on_missing_prod(folder: Path) -> Launched:
    """The dev target spelled relative to dbt_project/ (`./../..`), prod absolute and not there yet."""
    prod = folder / "prod.duckdb"
    launched = _dbt_build_by_hand(folder, "./" + os.path.relpath(prod, DBT_PROJECT_DIR), prod)
    launched.facts["prod"] = prod
    return launched


def _dbt_on_existing_prod(folder: Path) -> Launched:
    import duckdb

    prod = folder / "prod.duckdb"
    with duckdb.connect(str(prod)) as con:
        con.execute("create schema marts; create table marts.kept as select 42 as answer")
    before = _fingerprint(prod)
    launched = _dbt_build_by_hand(folder, str(prod), prod)
    launched.facts |= {"prod": prod, "before": before}
    return launched


def _elt(folder: Path, data_dir: Path, *args: str) -> Launched:
    return _start(
        [str(BIN / "elt"), *args],
        REPO_ROOT,
        folder,
        ELT_DATA_DIR=str(data_dir),
        ELT_PROD_DATABASE=str(folder / "prod.duckdb"),
    )


def _elt_below_a_file(*args: str):
    def start(folder: Path) -> Launched:
        not_a_folder = folder / "notes.txt"
        not_a_folder.write_text("a file, not a folder\n")
        launched = _elt(folder, not_a_folder / "data", *args)
        launched.facts |= {
            "file": not_a_folder,
            "before": _fingerprint(not_a_folder),
            "data_dir": not_a_folder / "data",
        }
        return launched

    return start


def _elt_run_under_proc(folder: Path) -> Launched:
    data_dir = Path("/proc") / f"elt-data-{os.getpid()}"
    launched = _elt(folder, data_dir, "run")
    launched.facts["data_dir"] = data_dir
    return launched


def _elt_run_on_a_read_only_folder(folder: Path) -> Launched:
    data_dir = folder / "data"
    data_dir.mkdir()
    data_dir.chmod(0o555)
    launched = _elt(folder, data_dir, "run")
    launched.facts["data_dir"] = data_dir
    return launched


SCENARIOS = {
    "dbt-missing-prod": _dbt_on_missing_prod,
    "dbt-existing-prod": _dbt_on_existing_prod,
    "run": _elt_below_a_file("run"),
    "branch-drop": _elt_below_a_file("branch", "drop", "42"),
    "dev": _elt_below_a_file("dev"),
    "run-under-proc": _elt_run_under_proc,
    **({} if IS_ROOT else {"run-read-only": _elt_run_on_a_read_only_folder}),
}


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Launched]]:
    started = {}
    try:
        for name, start in SCENARIOS.items():
            started[name] = start(tmp_path_factory.mktemp(name))
        yield started
    finally:
        for each in started.values():
            if each.process.poll() is None:
                each.process.kill()
                each.process.communicate()
        if "run-read-only" in started:
            started["run-read-only"].facts["data_dir"].chmod(0o755)  # so pytest can remove it


def _assert_refused_naming_the_setting(launched: Launched) -> None:
    output = launched.output
    assert launched.result.returncode != 0, output
    assert f"refusing to write the prod warehouse {launched.facts['prod']} from the dev target" in output, output
    assert "point ELT_DEV_DATABASE at another database" in output, output
    assert "Traceback" not in output, output


def test_dbt_by_hand_on_the_missing_prod_file_creates_nothing(launched):
    run = launched["dbt-missing-prod"]
    _assert_refused_naming_the_setting(run)
    assert list(run.folder.iterdir()) == [], "the refusal must come before the prod file is created"


def test_dbt_by_hand_leaves_an_existing_prod_file_byte_identical(launched):
    run = launched["dbt-existing-prod"]
    _assert_refused_naming_the_setting(run)
    assert _fingerprint(run.facts["prod"]) == run.facts["before"]
    assert [path.name for path in run.folder.iterdir()] == ["prod.duckdb"]  # no .wal beside it


def _assert_one_clear_line(launched: Launched) -> None:
    output = launched.output.strip()
    assert launched.result.returncode == 1, output
    assert "Traceback" not in output, output
    assert len(output.splitlines()) == 1, f"one line, not:\n{output}"
    assert output.startswith(f"Error: ELT_DATA_DIR={launched.facts['data_dir']} is not writable ("), output
    assert output.endswith(DATA_DIR_FIX), output


@pytest.mark.parametrize(
    "command",
    [
        "run",
        "branch-drop",
        "dev",
    ],
)
def test_a_data_dir_below_a_file_is_one_clear_error(command, launched):
    """A path below a regular file can be created by no one, root included; the environment refuses to resolve."""
    run = launched[command]
    _assert_one_clear_line(run)
    assert f"({run.facts['file']} is a file, not a folder)" in run.output
    assert _fingerprint(run.facts["file"]) == run.facts["before"]
    assert [path.name for path in run.folder.iterdir()] == ["notes.txt"], "nothing was created"


def test_elt_run_on_a_data_dir_nobody_can_create_is_one_clear_error(launched):
    """Under /proc no one may create a folder, though access() grants root write there: as root, `elt run` meets
    it when it prepares the Dagster instance (a non-root user when the environment resolves)."""
    run = launched["run-under-proc"]
    _assert_one_clear_line(run)
    assert not run.facts["data_dir"].exists()


@pytest.mark.skipif(IS_ROOT, reason="root writes a read-only folder: see the tests above")
def test_elt_run_on_a_read_only_data_dir_is_one_clear_error(launched):
    run = launched["run-read-only"]
    _assert_one_clear_line(run)
    assert list(run.facts["data_dir"].iterdir()) == []
