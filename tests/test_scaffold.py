"""`elt new source`: what it refuses, and, in a copy of the repository with three new sources (one per kind), that
they load with the rest of the definitions (dbt parses their models), pass the platform's graph and import rules and
ruff, and edit no existing file; and (slow) that `elt run` in that copy stays green, landing each new source's demo
with the row counts its fixtures derive, and that the generated tests pass on the demos."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from orchestration.lib.environment import REPO_ROOT
from orchestration.scaffold import KINDS, MAX_IDENTIFIER_LENGTH, new
from tests.support import copy_repository

# one source per kind: (name, table)
SOURCES = {"rest": ("scaf_rest", "widgets"), "sql": ("scaf_sql", "accounts"), "files": ("scaf_files", "readings")}
# the platform's own rules, run in the copy over the new sources too: the asset graph's, and the import contracts
PLATFORM_TESTS = ("tests/test_definitions.py", "tests/test_layers.py::test_the_code_keeps_every_contract")
# runs in the copy: dump every asset key's parents, then run the tests in the same (warm) process
LOAD_AND_TEST = """
import json, sys
import pytest
import orchestration
from orchestration.definitions import load_definitions

graph = load_definitions().resolve_asset_graph()
with open(sys.argv[1], "w") as out:
    json.dump(
        {
            "package": orchestration.__file__,
            "materializable": sorted(key.to_user_string() for key in graph.materializable_asset_keys),
            "parents": {
                key.to_user_string(): sorted(parent.to_user_string() for parent in graph.get(key).parent_keys)
                for key in graph.get_all_asset_keys()
            },
        },
        out,
    )
sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", *sys.argv[2:]]))
"""
# runs in the copy after `elt run`: what the end-to-end test expects of a demo run (every source's
# `demo_row_counts`) and the rows of the new staging models, then the generated tests
COUNT_AND_TEST = """
import json, sys
import duckdb
import pytest
from tests.support import expected_counts

warehouse, out, models = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
with duckdb.connect(warehouse, read_only=True) as con:
    staging = {model: con.sql(f"select count(*) from staging.{model}").fetchone()[0] for model in models}
with open(out, "w") as file:
    json.dump({"expected": expected_counts(warehouse), "staging": staging}, file)
sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", *sys.argv[4:]]))
"""
# a row of the summary table `elt run` prints: `│ raw_x.events │ 1,234 │`
SUMMARY_ROW = re.compile(r"^\W*(?P<table>[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*)\W+(?P<rows>[\d,]+)\W*$")


def scaffold(*args: str) -> Result:
    return CliRunner().invoke(new, ["source", *args], catch_exceptions=False)


def run(args: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, **kwargs)


def git(copy: Path, *args: str) -> str:
    identity = ["-c", "user.name=scaffold test", "-c", "user.email=scaffold@example.invalid", "-c", "commit.gpgsign=0"]
    return run(["git", *identity, *args], copy, check=True).stdout


def ruff(copy: Path, *args: str) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "ruff", *args], copy)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("Weather", "not a lowercase identifier"),
        ("1weather", "not a lowercase identifier"),
        ("my-source", "not a lowercase identifier"),
        ("my__source", "`__`"),
        ("weather_", "trailing `_`"),
        ("class", "Python keyword"),
        ("w" * (MAX_IDENTIFIER_LENGTH + 1), f"longer than {MAX_IDENTIFIER_LENGTH}"),
    ],
)
def test_refuses_a_bad_name(name: str, problem: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(new, ["source", name, "--kind", "rest", "--repo-root", str(tmp_path)])
    assert result.exit_code != 0
    assert repr(name) in result.output and problem in result.output, result.output
    assert not any(tmp_path.iterdir())


def test_refuses_a_bad_table(tmp_path: Path) -> None:
    result = CliRunner().invoke(new, ["source", "weather", "--kind", "sql", "--table", "a__b", "--repo-root", "."])
    assert result.exit_code != 0 and "TABLE 'a__b'" in result.output, result.output


def test_refuses_an_existing_source_naming_what_is_there() -> None:
    """Against the repository itself: the check runs before anything is written."""
    result = CliRunner().invoke(new, ["source", "files", "--kind", "files", "--repo-root", str(REPO_ROOT)])
    assert result.exit_code != 0
    for path in ["extract/files/", "orchestration/defs/files/", "dbt_project/models/staging/files/"]:
        assert path in result.output, result.output
    assert "tests/test_files.py" in result.output, result.output
    assert "created" not in result.output


def test_refuses_to_shadow_a_module() -> None:
    """`extract/tooling/` would hide `extract/tooling.py`."""
    result = CliRunner().invoke(new, ["source", "tooling", "--kind", "rest", "--repo-root", str(REPO_ROOT)])
    assert result.exit_code != 0 and "extract/tooling.py" in result.output, result.output


def test_longest_names_pass_ruff(tmp_path: Path) -> None:
    """Every kind at the longest name and table still fits ruff's 120 columns and format (imports resolve as
    first-party against empty stand-ins for the modules the generated code imports)."""
    stubs = ["orchestration/__init__.py", "orchestration/definitions.py", "extract/__init__.py", "extract/tooling.py"]
    stubs += [f"orchestration/lib/{module.name}" for module in (REPO_ROOT / "orchestration" / "lib").glob("*.py")]
    for stub in stubs:
        (tmp_path / stub).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / stub).touch()
    for folder in ("orchestration/defs", "dbt_project/models/staging", "tests"):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO_ROOT / "pyproject.toml", tmp_path)
    table = "t" * MAX_IDENTIFIER_LENGTH
    for kind in KINDS:
        name = kind[0] * MAX_IDENTIFIER_LENGTH
        result = scaffold(name, "--kind", kind, "--table", table, "--repo-root", str(tmp_path))
        assert result.exit_code == 0, result.output
    check = ruff(tmp_path, "check", "--no-cache", ".")
    assert check.returncode == 0, check.stdout + check.stderr
    formatted = ruff(tmp_path, "format", "--no-cache", "--check", ".")
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr


def scaffold_in_a_copy(tmp_path: Path) -> tuple[Path, list[str], dict[str, str]]:
    """A copy of the repository, committed in a git of its own, with one new source per kind (SOURCES) scaffolded
    into it; returns the copy, the paths written, and the environment that runs the copy's code (its packages
    first on the path) in a data dir of its own with every source on its demo."""
    copy = tmp_path / "repo"
    copy_repository(copy)
    git(copy, "init", "-q")
    git(copy, "add", "-A")
    git(copy, "commit", "-q", "--no-verify", "-m", "snapshot")

    written: list[str] = []
    for kind, (name, table) in SOURCES.items():
        result = scaffold(name, "--kind", kind, "--table", table, "--repo-root", str(copy))
        assert result.exit_code == 0, result.output
        created = [line.split("created ", 1)[1] for line in result.output.splitlines() if "created " in line]
        assert {f"tests/test_{name}.py", f"tests/fixtures_{name}.py"} <= set(created), result.output
        assert "Next:" in result.output and "It runs now, offline" in result.output, result.output
        written += created

    environ = {key: value for key, value in os.environ.items() if not key.startswith(("ELT_", "DAGSTER_CLOUD_"))}
    environ |= {"PYTHONPATH": str(copy), "ELT_DATA_DIR": str(copy / "data"), "COLUMNS": "200"}
    return copy, written, environ


def test_new_sources_load_in_a_copy_of_the_repository(tmp_path: Path) -> None:
    copy, written, environ = scaffold_in_a_copy(tmp_path)
    again = scaffold("scaf_rest", "--kind", "rest", "--repo-root", str(copy))
    assert again.exit_code != 0 and "extract/scaf_rest/" in again.output
    for kind, (name, _) in SOURCES.items():
        demo = {
            "rest": f"extract/{name}/recorded/",
            "sql": f"extract/{name}/demo_seed/",
            "files": f"extract/{name}/demo_drops/",
        }
        assert any(path.startswith(demo[kind]) for path in written), f"{kind}: no demo under {demo[kind]}"

    generated_python = [path for path in written if path.endswith(".py")]
    check = ruff(copy, "check", "--no-cache", *generated_python)
    assert check.returncode == 0, check.stdout + check.stderr
    formatted = ruff(copy, "format", "--no-cache", "--check", *generated_python)
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr

    # the definitions load (which parses the dbt project: the copy has no manifest) and the platform's rules run;
    # the generated tests, which load the demos, are the slow test's
    dump = tmp_path / "graph.json"
    tests = [test for test in PLATFORM_TESTS if (copy / test.split("::")[0]).is_file()]
    loaded = run([sys.executable, "-c", LOAD_AND_TEST, str(dump), *tests], copy, env=environ, timeout=900)
    assert dump.exists(), f"the definitions did not load in the copy:\n{loaded.stdout[-4000:]}{loaded.stderr[-4000:]}"
    graph = json.loads(dump.read_text())
    assert Path(graph["package"]).is_relative_to(copy), "the copy's `orchestration` package must be the one loaded"
    for name, table in SOURCES.values():
        raw, staging = f"raw_{name}/{table}", f"staging/stg_{name}__{table}"
        assert raw in graph["materializable"], f"{raw} not among the loaded assets"
        assert raw in graph["parents"][staging], f"{staging} should hang under {raw}: {graph['parents'].get(staging)}"
    assert loaded.returncode == 0, f"tests failed in the copy:\n{loaded.stdout[-6000:]}{loaded.stderr[-3000:]}"

    status = git(copy, "status", "--porcelain", "--untracked-files=all").splitlines()
    changed = [line for line in status if not line.startswith("?? ")]
    assert not changed, f"the scaffold (or loading) changed existing files: {changed}"
    assert sorted(line[3:] for line in status) == sorted(written)


@pytest.fixture
def outside_pytest_tmp() -> Iterator[Path]:
    """A temp folder outside pytest's (`/tmp/pytest-of-<user>`), for runs that start a demo PostgreSQL. As root, its
    server runs as another user, who must reach its data dir; every pytest session that starts (the nested one here,
    or another on the machine) makes pytest's folder private again, and `pg_ctl stop` then fails on the path."""
    with tempfile.TemporaryDirectory(prefix="scaffold-") as folder:
        yield Path(folder)


@pytest.mark.slow
def test_elt_run_stays_green_with_new_sources_on_their_demos(outside_pytest_tmp: Path) -> None:
    """Right after scaffolding, with no settings: `elt run` in the copy exits 0, its summary lists every new raw
    table with what the source's fixtures say its demo lands, and every table with what the end-to-end test expects
    (each source's `demo_row_counts`); the staging models hold the raw rows; the generated tests pass."""
    folder = outside_pytest_tmp
    copy, _, environ = scaffold_in_a_copy(folder)
    elt = run([str(Path(sys.executable).parent / "elt"), "run"], copy, env=environ, timeout=1800)
    output = elt.stdout + elt.stderr
    assert elt.returncode == 0, f"elt run failed in the copy:\n{output[-6000:]}"
    warehouse = copy / "data" / "warehouse" / "dev.duckdb"
    assert f"warehouse: {warehouse}" in elt.stdout, elt.stdout[-3000:]
    summary = {
        match["table"]: int(match["rows"].replace(",", ""))
        for match in map(SUMMARY_ROW.match, elt.stdout.splitlines())
        if match
    }

    counts = folder / "counts.json"
    models = ",".join(f"stg_{name}__{table}" for name, table in SOURCES.values())
    tests = [f"--basetemp={folder / 'pytest'}", *(f"tests/test_{name}.py" for name, _ in SOURCES.values())]
    checked = run(
        [sys.executable, "-c", COUNT_AND_TEST, str(warehouse), str(counts), models, *tests],
        copy,
        env=environ,
        timeout=900,
    )
    assert counts.exists(), f"counting failed in the copy:\n{checked.stdout[-4000:]}{checked.stderr[-4000:]}"
    expected, staging = json.loads(counts.read_text()).values()
    for name, table in SOURCES.values():
        raw = f"raw_{name}.{table}"
        assert expected.get(raw), f"tests/fixtures_{name}.py says its demo lands no {raw}: {expected}"
        assert summary.get(raw) == expected[raw], (
            f"{raw}: the summary says {summary.get(raw)}, the demo {expected[raw]}"
        )
        assert staging[f"stg_{name}__{table}"] == expected[raw]
    assert summary == expected, "the end-to-end test's demo counts do not match the run"
    assert checked.returncode == 0, (
        f"generated tests failed in the copy:\n{checked.stdout[-6000:]}{checked.stderr[-3000:]}"
    )
