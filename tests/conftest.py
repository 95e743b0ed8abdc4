"""Session fixtures start each real component once (PostgreSQL, the NeoWs replay server ...) and build each
expensive state once (the raw demo warehouse, one demo `elt run`, one published prod); tests copy what they change.
Each source's fixtures live in their own module `tests/fixtures_<source>.py`, found here by name, so adding a source
adds a module and edits nothing. Helpers every test may use are in `tests/support.py`."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from tests.support import materialize_prod, use_platform_env

pytest_plugins = [
    *sorted(f"tests.{path.stem}" for path in Path(__file__).parent.glob("fixtures_*.py")),
    "tests.browser",  # the headless Chromium fixture `browser`
]


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


@dataclass(frozen=True)
class DemoRun:
    """A data dir after one whole `elt run` on the bundled demos: its warehouse, its Dagster instance
    (`<data_dir>/dagster`, sqlite) and the run's summary."""

    data_dir: Path
    summary: object  # orchestration.pipeline.RunSummary
    seconds: float  # how long the run took

    @property
    def warehouse(self) -> Path:
        return Path(self.summary.warehouse)

    def copy_to(self, folder: Path) -> Path:
        """A copy of the whole data dir (warehouse, instance, extract state) under `folder`; returns its data dir.
        The copy's instance and warehouse carry on from the run, as the next `elt run` would."""
        target = folder / "data"
        # `cp -a`: the demo PostgreSQL's data folder belongs to its unprivileged user, and must stay so
        subprocess.run(["cp", "-a", str(self.data_dir), str(target)], check=True)
        return target


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """One whole `elt run` on the bundled demos (extracts, dbt build, tests), from empty, once per session, on a
    persistent instance in the data dir. Tests read it, or `copy_to` a folder of theirs to go on from it."""
    from orchestration.lib.instance import prepare_dagster_home
    from orchestration.pipeline import run_pipeline

    data_dir = tmp_path_factory.mktemp("demo_run") / "data"
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_platform_env(monkeypatch, data_dir)
        monkeypatch.setenv("DAGSTER_HOME", str(data_dir / "dagster"))  # restored afterwards
        home = prepare_dagster_home(data_dir / "dagster")
        started = time.monotonic()
        with dg.DagsterInstance.from_config(str(home)) as instance:
            summary = run_pipeline(instance=instance, log_level="WARNING")
    assert summary.ok, (summary.runs, summary.failed_steps, summary.checks_failed)
    return DemoRun(data_dir, summary, time.monotonic() - started)


@pytest.fixture(scope="session")
def published_prod(demo_raw_warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prod warehouse file after one passing Write-Audit-Publish run of every model on the raw demo data: the
    models in their audit slot `a`, the reader views published onto it, prod's manifest installed for PR branches.
    Tests copy it and never write it."""
    warehouse = Path(shutil.copy(demo_raw_warehouse, tmp_path_factory.mktemp("published_prod") / "prod.duckdb"))
    result = materialize_prod(warehouse)
    assert result.success, [str(event.step_failure_data) for event in result.all_events if event.is_step_failure]
    return warehouse
