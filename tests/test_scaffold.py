"""`elt new source`: what it refuses, and, in a copy of the repository, that three new sources (one per kind) load
with the rest of the definitions, pass their own generated tests, the platform's graph and import rules and ruff,
and edit no existing file."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from orchestration.lib.environment import REPO_ROOT
from orchestration.scaffold import KINDS, MAX_IDENTIFIER_LENGTH, new

# one source per kind: (name, table)
SOURCES = {"rest": ("scaf_rest", "widgets"), "sql": ("scaf_sql", "accounts"), "files": ("scaf_files", "readings")}
NOT_COPIED = (".venv/", "data/", "dbt_project/target/")
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


def scaffold(*args: str) -> Result:
    return CliRunner().invoke(new, ["source", *args], catch_exceptions=False)


def run(args: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, **kwargs)


def copy_repository(target: Path) -> None:
    """The files git lists (tracked and untracked, not ignored) as they are in the work tree now."""
    listed = run(["git", "ls-files", "-co", "--exclude-standard", "-z"], REPO_ROOT, check=True).stdout
    for path in filter(None, listed.split("\0")):
        source = REPO_ROOT / path
        if path.startswith(NOT_COPIED) or not source.is_file():  # not a file: deleted in the work tree
            continue
        (target / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target / path)


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


def test_new_sources_load_in_a_copy_of_the_repository(tmp_path: Path) -> None:
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
        assert f"tests/test_{name}.py" in created and "Next:" in result.output, result.output
        written += created
    again = scaffold("scaf_rest", "--kind", "rest", "--repo-root", str(copy))
    assert again.exit_code != 0 and "extract/scaf_rest/" in again.output

    generated_python = [path for path in written if path.endswith(".py")]
    check = ruff(copy, "check", "--no-cache", *generated_python)
    assert check.returncode == 0, check.stdout + check.stderr
    formatted = ruff(copy, "format", "--no-cache", "--check", *generated_python)
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr

    environ = {key: value for key, value in os.environ.items() if not key.startswith(("ELT_", "DAGSTER_CLOUD_"))}
    environ |= {"PYTHONPATH": str(copy), "ELT_DATA_DIR": str(copy / "data")}
    dump = tmp_path / "graph.json"
    tests = [f"tests/test_{name}.py" for name, _ in SOURCES.values()]
    tests += [test for test in PLATFORM_TESTS if (copy / test.split("::")[0]).is_file()]
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
