"""Session fixtures start each real component once (PostgreSQL, the NeoWs replay server ...); every test gets its own
temp warehouse. Each source's fixtures live in their own module `tests/fixtures_<source>.py`, found here by name, so
adding a source adds a module and edits nothing."""

import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

pytest_plugins = [
    *sorted(f"tests.{path.stem}" for path in Path(__file__).parent.glob("fixtures_*.py")),
    "tests.browser",  # the headless Chromium fixture `browser`
]

# the variables that choose the environment or point a source elsewhere: a test starts from none of them
_PLATFORM_PREFIXES = ("ELT_", "DAGSTER_CLOUD_", "NASA_API_KEY", "MOTHERDUCK_TOKEN")


def use_platform_env(monkeypatch: pytest.MonkeyPatch, data_dir: Path, **variables: str) -> Path:
    """Point this process at a dev environment of its own: `ELT_DATA_DIR=data_dir`, every source on its bundled
    demo, plus `variables`. Definitions loaded afterwards (`load_definitions()`) resolve to it."""
    for name in list(os.environ):
        if name.startswith(_PLATFORM_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ELT_DATA_DIR", str(data_dir))
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return data_dir


@pytest.fixture
def platform_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A dev environment of the test's own in tmp_path; returns its data dir."""
    return use_platform_env(monkeypatch, tmp_path / "data")


@pytest.fixture(scope="module")
def module_platform_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The same for a module's shared fixtures (one load of the definitions, one pipeline run)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield use_platform_env(monkeypatch, tmp_path_factory.mktemp("data"))


# the extract assets: every root of the graph that dbt does not build (the publish step is downstream of the models)
EXTRACT_ASSETS = (dg.AssetSelection.all().roots() - dg.AssetSelection.tag("dagster/kind/dbt", "")).without_checks()


@pytest.fixture(scope="session")
def demo_raw_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DuckDB file with every raw table of every source, loaded from the bundled demos by the extract assets
    through Dagster (`elt run`'s planner, dbt left out), once per session. Tests copy it and never write it."""
    from orchestration.pipeline import run_pipeline

    data_dir = tmp_path_factory.mktemp("demo_raw")
    with pytest.MonkeyPatch.context() as monkeypatch, dg.instance_for_test() as instance:
        use_platform_env(monkeypatch, data_dir)
        summary = run_pipeline(instance=instance, selection=EXTRACT_ASSETS, log_level="WARNING")
    assert summary.ok, (summary.runs, summary.failed_steps)
    return Path(summary.warehouse)
