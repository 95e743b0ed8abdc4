"""The Evidence dashboards (dashboards/, orchestration/dashboards/) on the real demo marts: every source and page
query runs on the warehouse of the resolved environment, a renamed mart column fails the build naming the query and
its pages, and the Evidence source follows the environment (dev file, branch clone, prod MotherDuck as config).

Not here: `evidence build`, the Dagster asset and the headless-browser checks of the pages. Offline, `evidence
sources` cannot write Parquet (DuckDB-WASM fetches its `parquet` extension from extensions.duckdb.org), see
docs/dashboards.md.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from orchestration.dashboards import site
from orchestration.lib.environment import DBT_PROJECT_DIR, REPO_ROOT, resolve
from orchestration.lib.motherduck import MotherDuckLocationError


@pytest.fixture(scope="module")
def marts_warehouse(demo_raw_warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the demo raw warehouse with every model built by `dbt run` (dev target), once per module."""
    folder = tmp_path_factory.mktemp("dashboards_marts")
    warehouse = Path(shutil.copy(demo_raw_warehouse, folder / "warehouse.duckdb"))
    env = {"ELT_ENV": "dev", "ELT_DEV_DATABASE": str(warehouse), "ELT_DATA_DIR": str(folder / "data")}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dbt"), "run", "--project-dir", str(DBT_PROJECT_DIR)]
        + ["--profiles-dir", str(REPO_ROOT), "--target-path", str(folder / "target")],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, **env, "DBT_LOG_PATH": str(folder / "logs")},
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:]
    return warehouse


def dev_env(warehouse: Path, data_dir: Path):
    return resolve({"ELT_DEV_DATABASE": str(warehouse), "ELT_DATA_DIR": str(data_dir)})


def count(warehouse: Path, sql: str) -> int:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql).fetchone()[0]


def test_every_source_and_page_query_runs_on_the_demo_marts(marts_warehouse: Path, tmp_path: Path):
    rows = site.check_queries(dev_env(marts_warehouse, tmp_path / "data"))
    assert set(rows) == set(site.source_queries())
    assert rows["share_prices"] == count(marts_warehouse, "select count(*) from marts.fct_share_prices_daily") > 0
    assert rows["revenue_daily"] == count(marts_warehouse, "select count(*) from marts.fct_revenue_daily") > 0
    assert rows["hackernews_stories"] == count(marts_warehouse, "select count(*) from staging.stg_hackernews__stories")
    # the overview's row counts are the marts' own
    with duckdb.connect(str(marts_warehouse), read_only=True) as con:
        listed = con.execute(f"select mart, row_count from ({site.source_queries()['marts_overview'].read_text()})")
        overview = dict(listed.fetchall())
        for mart, rows_in_mart in overview.items():
            assert rows_in_mart == con.execute(f"select count(*) from marts.{mart}").fetchone()[0], mart
    assert len(overview) == rows["marts_overview"]
    # every page reads a source query that exists, and every page has queries
    queries = site.page_queries()
    assert set(queries) == {"/", "/share-prices", "/asteroids", "/shop", "/hacker-news"}
    assert all(queries.values())


def test_a_renamed_mart_column_fails_the_build_naming_query_and_page(marts_warehouse: Path, tmp_path: Path):
    warehouse = Path(shutil.copy(marts_warehouse, tmp_path / "warehouse.duckdb"))
    with duckdb.connect(str(warehouse)) as con:
        con.execute("alter table marts.fct_revenue_daily rename column revenue to revenue_usd")
    env = dev_env(warehouse, tmp_path / "data")
    with pytest.raises(site.DashboardsError) as failed:
        site.build(env)
    message = str(failed.value)
    assert "source query sources/warehouse/revenue_daily.sql" in message
    assert "read by page(s) /shop" in message and "revenue" in message
    assert not site.site_dir(env).exists()  # nothing was built, nothing half-written


def test_a_failing_page_query_names_the_page_and_the_query(marts_warehouse: Path, tmp_path: Path):
    project = tmp_path / "dashboards"
    for name in ("pages", "sources"):
        shutil.copytree(site.PROJECT_DIR / name, project / name)
    shop = project / "pages" / "shop" / "index.md"
    shop.write_text(shop.read_text().replace("sum(revenue) as total_revenue", "sum(revenue_usd) as total_revenue"))
    with pytest.raises(site.DashboardsError, match=r"page /shop, query `totals` failed: .*revenue_usd"):
        site.check_queries(dev_env(marts_warehouse, tmp_path / "data"), project)


def test_the_evidence_source_is_the_environments_warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    source_dir = site.PROJECT_DIR / "sources" / site.SOURCE
    dev = resolve({"ELT_DATA_DIR": str(tmp_path / "data")})
    variables = site.evidence_env(dev, source_dir)
    # Evidence's DuckDB connector joins the file name to the source folder
    filename = variables["EVIDENCE_SOURCE__warehouse__filename"]
    assert os.path.normpath(source_dir / filename) == dev.warehouse
    assert variables["SEND_ANONYMOUS_USAGE_STATS"] == "no"

    prod_file = tmp_path / "prod.duckdb"
    branch = resolve({"ELT_ENV": "branch", "ELT_BRANCH_ID": "42", "ELT_PROD_DATABASE": str(prod_file)})
    branch_file = site.evidence_env(branch, source_dir)["EVIDENCE_SOURCE__warehouse__filename"]
    assert os.path.normpath(source_dir / branch_file) == branch.warehouse
    assert branch.warehouse.endswith("branches/42.duckdb")
    assert site.site_dir(branch).parts[-2:] == ("branch-42", "site")

    monkeypatch.setenv("MOTHERDUCK_TOKEN", "secret-token")
    prod = resolve({"ELT_ENV": "prod", "ELT_PROD_DATABASE": "md:analytics"})
    prod_variables = site.evidence_env(prod, source_dir)
    assert prod_variables["EVIDENCE_SOURCE__warehouse__filename"] == "md:analytics"
    assert not any("secret-token" in value for value in prod_variables.values())  # DuckDB reads the token itself
    clone = resolve({"ELT_ENV": "branch", "ELT_BRANCH_ID": "7", "ELT_PROD_DATABASE": "md:analytics"})
    assert site.evidence_env(clone, source_dir)["EVIDENCE_SOURCE__warehouse__filename"] == "md:analytics_clone_7"
    with pytest.raises(MotherDuckLocationError):
        site.evidence_env(resolve({"ELT_ENV": "prod", "ELT_PROD_DATABASE": "md:analytics?token=x"}), source_dir)


def test_without_node_the_build_says_what_to_install(marts_warehouse: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # a fresh machine: no node, no npm
    env = dev_env(marts_warehouse, tmp_path / "data")
    with pytest.raises(site.NodeMissing, match=r"Node\.js .* node and npm is not on PATH.*apt-get install nodejs npm"):
        site.build(env)
