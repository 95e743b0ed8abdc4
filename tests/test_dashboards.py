"""The Evidence dashboards (dashboards/, orchestration/dashboards/) on the real demo marts: every source and page
query runs on the warehouse of the resolved environment, a renamed mart column fails the build naming the query and
its pages, the overview lists exactly the marts the warehouse holds (so deleting a source's pages, queries and marts
leaves the checks green), and the Evidence source follows the environment (dev file, branch clone, prod MotherDuck
as config).

Not here: `evidence build`, the Dagster asset and the headless-browser checks of the pages. Offline, `evidence
sources` cannot write Parquet (DuckDB-WASM fetches its `parquet` extension from extensions.duckdb.org), see
docs/dashboards.md.
"""

import os
import re
import shutil
from pathlib import Path

import duckdb
import pytest

from orchestration.dashboards import site
from orchestration.lib.environment import DBT_PROJECT_DIR, resolve
from orchestration.lib.motherduck import MotherDuckLocationError


@pytest.fixture(scope="module")
def marts_warehouse(demo_run) -> Path:
    """The session's demo run: every raw table and every model (dev target). Tests copy it before writing."""
    return demo_run.warehouse


def dev_env(warehouse: Path, data_dir: Path):
    return resolve({"ELT_DEV_DATABASE": str(warehouse), "ELT_DATA_DIR": str(data_dir)})


def count(warehouse: Path, sql: str) -> int:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql).fetchone()[0]


def overview(warehouse: Path, env) -> dict[str, tuple]:
    """The generated overview query run on `warehouse`: `mart -> (source, row_count, newest_data, last_loaded_at)`."""
    sql = site.generated_queries(env)[site.OVERVIEW]
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {mart: tuple(rest) for mart, *rest in con.execute(sql).fetchall()}


def marts_in(warehouse: Path) -> set[str]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        listed = con.execute("select table_name from information_schema.tables where table_schema = 'marts'")
        return {name for (name,) in listed.fetchall()}


def test_every_source_and_page_query_runs_on_the_demo_marts(marts_warehouse: Path, tmp_path: Path):
    env = dev_env(marts_warehouse, tmp_path / "data")
    rows = site.check_queries(env)
    queries = site.source_queries()
    assert set(rows) == {*queries, site.OVERVIEW}
    for name, path in queries.items():  # every query has rows (Evidence writes no table for an empty result)
        assert rows[name] == count(marts_warehouse, f"select count(*) from ({path.read_text()})") > 0, name
    # the overview lists every mart in the warehouse, with its exact rows, its freshness and its source
    marts = overview(marts_warehouse, env)
    assert set(marts) == marts_in(marts_warehouse) and len(marts) == rows[site.OVERVIEW] > 0
    labels = site.mart_sources()
    with duckdb.connect(str(marts_warehouse), read_only=True) as con:
        for mart, (source, rows_in_mart, newest_data, last_loaded_at) in marts.items():
            assert rows_in_mart == con.execute(f"select count(*) from marts.{mart}").fetchone()[0], mart
            columns = con.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = 'marts' and table_name = ?",
                [mart],
            ).fetchall()
            newest = [
                con.execute(f"select max({c}) from marts.{mart}").fetchone()[0] for c, t in columns if t == "DATE"
            ]
            assert newest_data == max((day for day in newest if day is not None), default=None), mart
            has_loaded_at = any(column == "loaded_at" for column, _ in columns)
            loaded = f"select max(loaded_at)::timestamp from marts.{mart}" if has_loaded_at else "select null"
            assert last_loaded_at == con.execute(loaded).fetchone()[0], mart
            assert source == labels.get(mart) is not None, mart
    # each source owns pages/<source>/ and the source queries named `<source>_*`; only the overview is shared
    page_sql = site.page_queries()
    assert all(page_sql.values())
    owners = {page.strip("/").split("/")[0] for page in page_sql if page != "/"}
    assert owners == {folder.name for folder in (site.PROJECT_DIR / "pages").iterdir() if folder.is_dir()}
    assert owners <= set(labels.values())
    assert all(any(name.startswith(f"{owner}_") for owner in owners) for name in queries), sorted(queries)


def a_source_query_on_a_mart() -> tuple[str, str, str, str]:
    """(source query file, the mart it reads, one column it selects, a page that reads the query), from whatever
    queries and pages the project has."""
    pages = site.page_queries()
    for path in sorted((site.PROJECT_DIR / "sources" / "warehouse").glob("*.sql")):
        found = re.search(r"select\s+(\w+)[\s\S]*?from\s+marts\.(\w+)", path.read_text(), re.IGNORECASE)
        readers = [
            page for page, queries in pages.items() if any(f"warehouse.{path.stem}" in q for q in queries.values())
        ]
        if found and readers:
            return path.name, found.group(2), found.group(1), readers[0]
    pytest.skip("no source query reads a mart and is read by a page")


def test_a_renamed_mart_column_fails_the_build_naming_query_and_page(marts_warehouse: Path, tmp_path: Path):
    query_file, mart, column, page = a_source_query_on_a_mart()
    warehouse = Path(shutil.copy(marts_warehouse, tmp_path / marts_warehouse.name))
    with duckdb.connect(str(warehouse)) as con:
        con.execute(f'alter table marts.{mart} rename column "{column}" to "{column}_renamed"')
    env = dev_env(warehouse, tmp_path / "data")
    with pytest.raises(site.DashboardsError) as failed:
        site.build(env)
    message = str(failed.value)
    assert f"source query sources/warehouse/{query_file}" in message
    assert f"read by page(s) {page}" in message and column in message
    assert not site.site_dir(env).exists()  # nothing was built, nothing half-written


def test_a_failing_page_query_names_the_page_and_the_query(marts_warehouse: Path, tmp_path: Path):
    page, queries = next((page, queries) for page, queries in sorted(site.page_queries().items()) if queries)
    name = sorted(queries)[0]
    project = tmp_path / "dashboards"
    for folder in ("pages", "sources"):
        shutil.copytree(site.PROJECT_DIR / folder, project / folder)
    markdown = project / "pages" / (f"{page.strip('/')}/index.md" if page != "/" else "index.md")
    text = markdown.read_text()
    body = text.index(f"```sql {name}\n") + len(f"```sql {name}\n")
    markdown.write_text(
        text[:body] + "select no_such_column_anywhere from range(1)\n" + text[text.index("```", body) :]
    )
    with pytest.raises(site.DashboardsError, match=rf"page {re.escape(page)}, query `{name}` failed: .*no_such_column"):
        site.check_queries(dev_env(marts_warehouse, tmp_path / "data"), project)


def source_models(source: str) -> dict[str, set[str]]:
    """The relations the dbt models of `source` build, by schema: its folder in every layer of the dbt project."""
    layers = DBT_PROJECT_DIR / "models"
    return {layer.name: {model.stem for model in (layer / source).rglob("*.sql")} for layer in layers.iterdir()}


@pytest.mark.parametrize(
    "source", sorted(page.name for page in (site.PROJECT_DIR / "pages").iterdir() if page.is_dir())
)
def test_deleting_a_source_deletes_its_paths_and_the_checks_stay_green(
    source: str, marts_warehouse: Path, tmp_path: Path
):
    # a fork without `source`: its pages and queries gone from dashboards/, its models gone from the warehouse
    project = tmp_path / "dashboards"
    shutil.copytree(site.PROJECT_DIR, project, ignore=shutil.ignore_patterns("node_modules", ".evidence", "build"))
    queries = project / "sources" / site.SOURCE
    owned = [project / "pages" / source, *queries.glob(f"{source}_*.sql"), *queries.glob(source)]
    assert all(path.exists() for path in owned)
    for path in owned:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    warehouse = Path(shutil.copy(marts_warehouse, tmp_path / marts_warehouse.name))
    models = source_models(source)
    with duckdb.connect(str(warehouse)) as con:
        relations = con.execute("select table_schema, table_name, table_type from information_schema.tables")
        for schema, name, kind in relations.fetchall():
            if name in models.get(schema, ()):
                con.execute(f"drop {'view' if kind == 'VIEW' else 'table'} {schema}.{name}")
        con.execute(f"drop schema if exists raw_{source} cascade")
    dropped = models["marts"]
    assert not dropped & marts_in(warehouse)

    # nothing left in the project names the source's marts (or any other model of it)
    for path in project.rglob("*"):
        if path.is_file() and path.suffix in (".md", ".sql", ".yaml", ".json"):
            text = path.read_text()
            assert not any(model in text for model in set().union(*models.values())), path

    env = dev_env(warehouse, tmp_path / "data")
    rows = site.check_queries(env, project)
    assert not any(name.startswith(f"{source}_") for name in rows)
    assert f"/{source}" not in site.pages(project)
    marts = overview(warehouse, env)
    assert set(marts) == marts_in(warehouse) == set(site.mart_sources()) - dropped
    assert rows[site.OVERVIEW] == len(marts) > 0
    assert source not in {label for label, *_ in marts.values()}


def test_the_overview_counts_published_views_as_prod_readers_see_them(marts_warehouse: Path, tmp_path: Path):
    # Write-Audit-Publish: readers see `marts.<name>` as a view over the published slot schema
    warehouse = Path(shutil.copy(marts_warehouse, tmp_path / marts_warehouse.name))
    every_mart = marts_in(marts_warehouse)
    mart = sorted(every_mart)[0]
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create schema marts__slot_a")
        con.execute(f"create table marts__slot_a.{mart} as select * from marts.{mart}")
        con.execute(f"insert into marts__slot_a.{mart} select * from marts.{mart}")  # twice the rows: its own count
        con.execute(f"drop table marts.{mart}")
        con.execute(f"create view marts.{mart} as select * from marts__slot_a.{mart}")
        in_slot = con.execute(f"select count(*) from marts__slot_a.{mart}").fetchone()[0]
    env = dev_env(warehouse, tmp_path / "data")
    rows = site.check_queries(env)
    marts = overview(warehouse, env)
    assert marts[mart][1] == in_slot == 2 * count(marts_warehouse, f"select count(*) from marts.{mart}") > 0
    assert set(marts) == every_mart and rows[site.OVERVIEW] == len(every_mart)  # the slot schema is not a mart


def test_source_queries_are_named_as_evidence_names_them(tmp_path: Path):
    # as in Evidence: the file name up to its first dot, in any subfolder; a second file of one name is an error
    project = tmp_path / "dashboards"
    shutil.copytree(site.PROJECT_DIR / "sources", project / "sources")
    queries = project / "sources" / site.SOURCE
    name, path = next(iter(site.source_queries(project).items()))
    owner = next(page.name for page in (site.PROJECT_DIR / "pages").iterdir() if name.startswith(f"{page.name}_"))
    (queries / owner).mkdir()
    moved = path.rename(queries / owner / path.name)
    assert site.source_queries(project)[name] == moved
    (queries / f"{name}.sql").write_text("select 1")
    with pytest.raises(site.DashboardsError, match=rf"{name}.sql and .*{owner}/{name}.sql are both `warehouse.{name}`"):
        site.source_queries(project)
    (queries / f"{name}.sql").unlink()
    (queries / f"{site.OVERVIEW}.sql").write_text("select 1")  # the overview is generated, never a file
    with pytest.raises(site.DashboardsError, match=rf"{site.OVERVIEW}.sql and the generated overview"):
        site.source_queries(project)


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
