"""Every demo source is deletable: in a copy of the repository, deleting exactly the paths a source owns leaves the
definitions loading with exactly the other assets, dbt parsing exactly the other models and tests, the import
contracts kept and the test suite collecting. The sources are found on disk (a folder in `extract/` with a slice in
`orchestration/defs/`), so this test names none of them and follows a fork that has deleted some already."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestration.lib.environment import REPO_ROOT
from tests.support import clean_environ, copy_repository


def present_sources(root: Path = REPO_ROOT) -> list[str]:
    """Sources are folders named alike in `extract/` and `orchestration/defs/`."""
    slices = {path.name for path in (root / "orchestration" / "defs").iterdir() if path.is_dir()}
    return sorted(path.name for path in (root / "extract").iterdir() if path.is_dir() and path.name in slices)


def owned_paths(root: Path, source: str) -> list[Path]:
    """What a source owns (docs/architecture.md, "Adding a source"): its folder in each layer, the files named after
    it in the dbt tests, the test suite, the docs and the dashboards."""
    dbt = root / "dbt_project"
    candidates = [
        root / "extract" / source,
        root / "orchestration" / "defs" / source,
        *(dbt / "models").glob(f"*/{source}"),
        *(dbt / "tests").rglob(f"{source}"),
        *(dbt / "tests").rglob(f"*{source}*.sql"),
        *(root / "tests").rglob(f"test_{source}*.py"),
        *(root / "tests").rglob(f"fixtures_{source}.py"),
        root / "docs" / f"{source}.md",
        root / "dashboards" / "pages" / source,
        *(root / "dashboards" / "sources").rglob(f"{source}_*.sql"),
        *(root / "dashboards" / "sources").rglob(f"{source}"),
    ]
    return sorted({path for path in candidates if path.exists()})


# runs in the copy: the definitions (which parse the copy's dbt project into its own manifest) and the collection
PROBE = """
import io, json, sys
from contextlib import redirect_stdout
import pytest
from orchestration.definitions import load_definitions
from orchestration.lib.dbt import ensure_manifest

graph = load_definitions().resolve_asset_graph()
manifest = json.loads(ensure_manifest().read_text())
collected = io.StringIO()
with redirect_stdout(collected):
    code = pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "-m", ""])
json.dump({
    "assets": sorted(key.to_user_string() for key in graph.materializable_asset_keys),
    "checks": sorted(key.to_user_string() for key in graph.asset_check_keys),
    "nodes": sorted(manifest["nodes"]),
    "collect_exit": int(code),
    "collected": collected.getvalue()[-4000:],
}, open(sys.argv[1], "w"))
"""


def probe(root: Path, data_dir: Path, out: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(out)],
        cwd=root,
        env=clean_environ(PYTHONPATH=str(root), ELT_DATA_DIR=str(data_dir)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.exists(), f"the probe failed in {root}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_repository(tmp_path_factory.mktemp("repository") / "repo")


@pytest.fixture(scope="module")
def whole(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The copy with every source, probed the same way, as the reference."""
    folder = tmp_path_factory.mktemp("whole")
    return probe(repository, folder / "data", folder / "probe.json")


# where a source may be named outside its own paths: the docs and the README describe the demos, the benchmarks run
# a stage per source only while that source is present, and the lock file lists packages
MAY_NAME_SOURCES = ("README.md", "docs/", "benchmarks/", "uv.lock", "dashboards/package-lock.json")


def source_names(source: str, manifest: dict) -> set[str]:
    """What only a source's own paths may say: its raw schema, its modules and fixtures, and its dbt models."""
    dbt = REPO_ROOT / "dbt_project"
    owned = {str(path.relative_to(dbt)) for path in owned_paths(REPO_ROOT, source) if path.is_relative_to(dbt)}
    models = {
        node["name"]
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node["original_file_path"].startswith(tuple(owned))
    }
    return {f"raw_{source}", f"extract.{source}", f"orchestration.defs.{source}", f"fixtures_{source}", *models}


@pytest.mark.parametrize("source", present_sources())
def test_nothing_outside_a_source_names_it(source: str) -> None:
    """The quick form of the deletion below: no file outside the source's own paths names its raw schema, its
    modules or its models (the docs, the README and the per-source benchmark stages excepted)."""
    from tests.support import manifest

    names = source_names(source, manifest())
    owned = [str(path.relative_to(REPO_ROOT)) for path in owned_paths(REPO_ROOT, source)]
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    found = []
    for path in listed:
        if path.startswith(MAY_NAME_SOURCES) or any(path == o or path.startswith(f"{o}/") for o in owned):
            continue
        file = REPO_ROOT / path
        if not file.is_file():
            continue
        text = file.read_text(errors="replace")
        found += [f"{path}: {name}" for name in sorted(names) if name in text]
    assert not found, "named outside the source's own paths:\n" + "\n".join(found)


@pytest.mark.slow  # a copy of the repository, a dbt parse, a load of the definitions and a collection per source
@pytest.mark.parametrize("source", present_sources())
def test_deleting_a_source_leaves_exactly_the_rest(
    source: str, repository: Path, whole: dict, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp(f"without_{source}")
    copy = folder / "repo"
    subprocess.run(["cp", "-a", str(repository), str(copy)], check=True)
    subprocess.run(["rm", "-rf", str(copy / "dbt_project" / "target")], check=True)  # parsed again, without it
    owned = owned_paths(copy, source)
    for path in owned:
        subprocess.run(["rm", "-rf", str(path)], check=True)
    assert not present_sources(copy).count(source)

    without = probe(copy, folder / "data", folder / "probe.json")

    # exactly the source's assets and dbt nodes are gone: its raw tables, and the models and tests in its folders
    manifest = json.loads((repository / "dbt_project" / "target" / "manifest.json").read_text())
    deleted = {
        str(path.relative_to(copy / "dbt_project")) for path in owned if path.is_relative_to(copy / "dbt_project")
    }
    gone_nodes = {
        unique_id
        for unique_id, node in manifest["nodes"].items()
        if any(node["original_file_path"] == d or node["original_file_path"].startswith(f"{d}/") for d in deleted)
        or (node.get("patch_path") or "").split("://", 1)[-1].startswith(tuple(deleted))
    }
    assert set(whole["nodes"]) - set(without["nodes"]) == gone_nodes
    assert set(without["nodes"]) <= set(whole["nodes"])
    gone_assets = set(whole["assets"]) - set(without["assets"])
    assert {key for key in gone_assets if key.startswith(f"raw_{source}/")}, f"no raw_{source} asset was removed"
    models = {node["name"] for unique_id, node in manifest["nodes"].items() if unique_id in gone_nodes}
    assert all(key.startswith(f"raw_{source}/") or key.split("/")[-1] in models for key in gone_assets), gone_assets
    assert set(without["assets"]) <= set(whole["assets"])

    # the suite still collects, without a test of the deleted source
    assert without["collect_exit"] == 0, without["collected"]
    assert f"test_{source}" not in without["collected"]

    # and the import contracts hold
    lint = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports")],
        cwd=copy,
        env=clean_environ(PYTHONPATH=str(copy)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert lint.returncode == 0, lint.stdout[-3000:]
