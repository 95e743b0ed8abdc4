"""Build and serve the Evidence project in `dashboards/` on the warehouse of a resolved environment (no Dagster here:
`elt dashboards` calls it).

Where the data is comes from the `Environment` only: its warehouse becomes Evidence's `EVIDENCE_SOURCE__warehouse__*`
variables (a DuckDB file, opened read-only, or `md:<database>` with the token from `MOTHERDUCK_TOKEN`). npm packages
come from `dashboards/package-lock.json` through `npm ci`, run only when `node_modules` is missing or was installed
from another lock file. A build runs in a working copy of the project under the data dir, so builds of different
environments (and `elt dashboards dev`) never share Evidence's `.evidence/` folder, and the new site replaces the old
one only when every source and page query succeeded.

The project names no source's marts outside that source's own paths (`pages/<source>/` and
`sources/warehouse/<source>_*.sql`), so deleting a source deletes exactly those. The overview's source query,
`marts_overview`, is generated here from the marts the warehouse holds when the queries are checked, and written
into the working copy, never into `dashboards/`.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb

from orchestration.lib import motherduck
from orchestration.lib.environment import DBT_PROJECT_DIR, REPO_ROOT, Environment

PROJECT_DIR = REPO_ROOT / "dashboards"
SOURCE = "warehouse"  # dashboards/sources/warehouse/: the one Evidence source, the environment's warehouse
LOCK_STAMP = ".elt-package-lock.sha256"  # in node_modules: the sha256 of the lock file it was installed from
_COPIED = ("package.json", "package-lock.json", "evidence.config.yaml", "pages", "sources")
OVERVIEW = "marts_overview"  # the generated source query: rows and freshness of every mart (generated_queries)
MARTS_SCHEMA = "marts"  # the schema readers query (in prod: views onto the published Write-Audit-Publish slot)
_TABLE_REFERENCE = re.compile(r"\b(marts|staging)\.([a-z_][a-z0-9_]*)", re.IGNORECASE)
_PAGE_QUERY = re.compile(r"^```sql[ \t]+(?P<name>[A-Za-z_][\w]*)[^\n]*\n(?P<sql>.*?)^```", re.MULTILINE | re.DOTALL)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# what stops `evidence sources` offline: Evidence's universal-sql writes each source query's rows
# to Parquet with DuckDB-WASM (@duckdb/duckdb-wasm 1.32.0, DuckDB 1.4), which has no built-in `parquet` extension
# and fetches it from extensions.duckdb.org at that step; the pages' DuckDB-WASM in the browser needs it as well
OFFLINE_BLOCKER = (
    "note: without access to extensions.duckdb.org, `evidence sources` cannot write Parquet: DuckDB-WASM "
    "(@duckdb/duckdb-wasm 1.32.0) downloads its `parquet` extension there (docs/dashboards.md, 'Blocked offline')"
)


class DashboardsError(RuntimeError):
    """The dashboards could not be built or served; the message names the page, query, file or tool at fault."""


class NodeMissing(DashboardsError):
    """Node.js or npm is not installed: the dashboards need them, nothing else in the platform does."""


@dataclass(frozen=True)
class BuiltSite:
    site: Path  # the static site: open index.html through any web server
    pages: tuple[str, ...]  # URL paths of the pages, "/" first
    source_queries: tuple[str, ...]  # the source queries run against the warehouse
    npm_installed: bool  # whether this build had to run `npm ci`
    seconds: float


def site_dir(env: Environment) -> Path:
    """Where the static site of `env` is written: `<ELT_DATA_DIR>/dashboards/<dev|prod|branch-<id>>/site`."""
    name = f"branch-{env.branch_id}" if env.name == "branch" else env.name
    return env.data_dir / "dashboards" / name / "site"


def source_queries(project_dir: Path = PROJECT_DIR) -> dict[str, Path]:
    """Every source query file of the warehouse source, by the name pages query it as (`warehouse.<name>`).

    As in Evidence, the name is the file name up to its first dot, whatever subfolder of `sources/warehouse/` the
    file is in; two files with one name (Evidence would keep one silently) and a file named like a generated query
    are errors."""
    found: dict[str, Path] = {}
    source_dir = project_dir / "sources" / SOURCE
    for path in sorted(source_dir.rglob("*.sql")):
        name = path.name.split(".")[0]
        if name in found or name == OVERVIEW:
            clash = found[name].relative_to(project_dir) if name in found else "the generated overview"
            raise DashboardsError(
                f"dashboards: source query {path.relative_to(project_dir)} and {clash} are both `{SOURCE}.{name}`: "
                "rename the file (a source's queries are named `<source>_<what>.sql`)"
            )
        found[name] = path
    return dict(sorted(found.items()))


def mart_sources(dbt_project_dir: Path = DBT_PROJECT_DIR) -> dict[str, str]:
    """The source each mart belongs to, by mart: the folder of its dbt model under `models/marts/` (one folder per
    source, the same name as its slice, its pages and its queries). Only a label on the overview."""
    marts_dir = dbt_project_dir / "models" / MARTS_SCHEMA
    return {
        path.stem: path.relative_to(marts_dir).parts[0]
        for path in sorted(marts_dir.rglob("*.sql"))
        if len(path.relative_to(marts_dir).parts) > 1
    }


def overview_sql(con: duckdb.DuckDBPyConnection, catalog: str, sources: Mapping[str, str]) -> str:
    """The overview's source query over every table and view in `<catalog>.marts` (prod readers see views): one
    `union all` branch per mart with its exact row count, its newest data (the latest value of its DATE columns)
    and its last load (`max(loaded_at)`, where the mart has that column), labelled with its source."""
    columns = con.execute(
        "select t.table_name, c.column_name, c.data_type from information_schema.tables t "
        "left join information_schema.columns c using (table_catalog, table_schema, table_name) "
        "where t.table_catalog = ? and t.table_schema = ? order by t.table_name, c.ordinal_position",
        [catalog, MARTS_SCHEMA],
    ).fetchall()
    marts: dict[str, list[tuple[str, str]]] = {}
    for mart, column, data_type in columns:
        marts.setdefault(mart, [])
        if column is not None:
            marts[mart].append((column, data_type))
    header = "-- generated from the marts in the warehouse: rows and freshness (the newest day of data in it) per mart"
    branches = []
    for mart, mart_columns in marts.items():
        dates = [f"max({_quote(column)})" for column, data_type in mart_columns if data_type == "DATE"]
        newest = f"greatest({', '.join(dates)})::date" if dates else "null::date"
        loaded = "max(loaded_at)" if any(column == "loaded_at" for column, _ in mart_columns) else "null"
        source = _literal(sources[mart]) if mart in sources else "null"
        branches.append(
            f"select {_literal(mart)}::varchar as mart, {source}::varchar as source, count(*) as row_count, "
            f"{newest} as newest_data, {loaded}::timestamp as last_loaded_at\n"
            f"from {MARTS_SCHEMA}.{_quote(mart)}"
        )
    if not branches:  # no marts at all: the columns, no rows
        branches.append(
            "select null::varchar as mart, null::varchar as source, 0::bigint as row_count, "
            "null::date as newest_data, null::timestamp as last_loaded_at\nwhere false"
        )
    return header + "\n" + "\nunion all\n".join(branches) + "\n"


def tables_read(project_dir: Path = PROJECT_DIR) -> list[tuple[str, str]]:
    """The `(schema, table)` of every mart (or staging view) a source query reads: the dashboards' upstream."""
    found = {
        (schema.lower(), table.lower())
        for path in source_queries(project_dir).values()
        for schema, table in _TABLE_REFERENCE.findall(path.read_text())
    }
    return sorted(found)


def pages(project_dir: Path = PROJECT_DIR) -> list[str]:
    """URL path of every page: `pages/index.md` is `/`, `pages/shop/index.md` is `/shop`."""
    paths = []
    for page in sorted((project_dir / "pages").rglob("*.md")):
        parts = page.relative_to(project_dir / "pages").with_suffix("").parts
        if parts[-1] == "index":
            parts = parts[:-1]
        paths.append("/" + "/".join(parts))
    return sorted(paths, key=lambda path: (path != "/", path))


def page_queries(project_dir: Path = PROJECT_DIR) -> dict[str, dict[str, str]]:
    """The SQL blocks of every page (```sql <name>), by page URL path and query name."""
    found = {}
    for path in pages(project_dir):
        page = project_dir / "pages" / path.strip("/") / "index.md" if path != "/" else project_dir / "pages/index.md"
        if not page.is_file():
            page = (project_dir / "pages" / path.strip("/")).with_suffix(".md")
        found[path] = {match["name"]: match["sql"].strip() for match in _PAGE_QUERY.finditer(page.read_text())}
    return found


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _attach(con: duckdb.DuckDBPyConnection, env: Environment) -> str:
    """Attach `env`'s warehouse (a local file read-only) and make it the default; returns its catalog name, the
    file's stem or the MotherDuck database, which views inside it refer to."""
    location = env.warehouse if env.is_motherduck else str(env.warehouse_path)
    catalog = motherduck.database_name(location) if env.is_motherduck else env.warehouse_path.stem
    options = "" if env.is_motherduck else " (read_only)"
    con.execute(f"attach {_literal(location)} as {_quote(catalog)}{options}")
    con.execute(f"use {_quote(catalog)}.main")
    return catalog


def generated_queries(env: Environment, dbt_project_dir: Path = DBT_PROJECT_DIR) -> dict[str, str]:
    """The source queries generated from `env`'s warehouse, by name: the overview over the marts it holds now."""
    with duckdb.connect() as con:
        catalog = _attach(con, env)
        return {OVERVIEW: overview_sql(con, catalog, mart_sources(dbt_project_dir))}


def _reads(sql: str, name: str) -> bool:
    return re.search(rf"\b{SOURCE}\.{re.escape(name)}\b", sql, re.IGNORECASE) is not None


def check_queries(
    env: Environment, project_dir: Path = PROJECT_DIR, generated: Mapping[str, str] | None = None
) -> dict[str, int]:
    """Run every source query on `env`'s warehouse (read-only), the files of `project_dir` and the `generated` ones
    (by default `generated_queries(env)`), then every page query on their results, as Evidence would; returns the
    rows of each source query. A query that fails (a mart column renamed, a table gone) raises DashboardsError
    naming the query file, or the page and query, before any site is touched."""
    queries = {
        name: (str(path.relative_to(project_dir)), path.read_text())
        for name, path in source_queries(project_dir).items()
    }
    page_sql = page_queries(project_dir)
    rows = {}
    with duckdb.connect() as con:
        catalog = _attach(con, env)
        if generated is None:
            generated = {OVERVIEW: overview_sql(con, catalog, mart_sources())}
        for name, sql in generated.items():
            queries[name] = (f"sources/{SOURCE}/{name}.sql (generated from the warehouse)", sql)
        con.execute(f"create schema memory.{SOURCE}")
        for name, (where, sql) in queries.items():
            readers = [page for page, by_name in page_sql.items() if any(_reads(q, name) for q in by_name.values())]
            try:
                con.execute(f"create table memory.{SOURCE}.{_quote(name)} as {sql}")
            except duckdb.Error as error:
                raise DashboardsError(
                    f"dashboards: source query {where} failed on the {env.name} warehouse {env.warehouse} "
                    f"(read by page(s) {', '.join(readers) or 'none'}): {error}"
                ) from None
            rows[name] = con.execute(f"select count(*) from memory.{SOURCE}.{_quote(name)}").fetchone()[0]
        # the pages see only the source queries' results, as in Evidence (and no catalog named like the source)
        con.execute(f"use memory; detach {_quote(catalog)}")
        for page, sql_by_name in page_sql.items():
            for name, sql in sql_by_name.items():
                if "${" in sql:  # a query over another query's result: Evidence resolves it in the page
                    continue
                try:
                    con.execute(f"select count(*) from ({sql})").fetchone()
                except duckdb.Error as error:
                    raise DashboardsError(f"dashboards: page {page}, query `{name}` failed: {error}") from None
    return rows


def evidence_env(env: Environment, source_dir: Path) -> dict[str, str]:
    """The Evidence variables that point its `warehouse` source at `env`'s warehouse.

    Evidence's DuckDB connector joins a file name to the source folder (`sources/warehouse/`), so a local file is
    given relative to that folder; a MotherDuck database is `md:<database>` (the token, if any, stays in
    `MOTHERDUCK_TOKEN`, which DuckDB reads itself). Telemetry is off."""
    if env.is_motherduck:
        filename = motherduck.location(motherduck.database_name(env.warehouse))
    else:
        filename = os.path.relpath(env.warehouse_path, source_dir)
    return {
        f"EVIDENCE_SOURCE__{SOURCE}__filename": filename,
        "SEND_ANONYMOUS_USAGE_STATS": "no",
    }


def _lock_digest(project_dir: Path) -> str:
    lock = project_dir / "package-lock.json"
    if not lock.is_file():
        raise DashboardsError(f"{lock} is missing: it pins every npm package (`npm install` in dashboards/ makes it)")
    return hashlib.sha256(lock.read_bytes()).hexdigest()


def check_node() -> tuple[str, str]:
    """Paths of `node` and `npm`; NodeMissing naming what to install when either is not on PATH."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        missing = " and ".join(name for name, path in (("node", node), ("npm", npm)) if not path)
        raise NodeMissing(
            f"the dashboards need Node.js (>= 18) and npm, and {missing} is not on PATH: install them "
            "(Debian: `apt-get install nodejs npm`), then run `elt dashboards build`"
        )
    return node, npm


def ensure_node_modules(project_dir: Path = PROJECT_DIR, timeout_s: float = 900) -> bool:
    """`npm ci` when `node_modules` is missing or was installed from another lock file; True when it ran."""
    _, npm = check_node()
    digest = _lock_digest(project_dir)
    stamp = project_dir / "node_modules" / LOCK_STAMP
    if stamp.is_file() and stamp.read_text().strip() == digest:
        return False
    _run([npm, "ci", "--no-audit", "--no-fund"], cwd=project_dir, env={}, what="npm ci", timeout_s=timeout_s)
    stamp.write_text(digest + "\n")
    return True


def _run(command: list[str], cwd: Path, env: Mapping[str, str], what: str, timeout_s: float) -> str:
    """Run a tool, return its output (stdout and stderr merged, colours stripped); DashboardsError on failure."""
    try:
        result = subprocess.run(
            command,
            cwd=cwd,
            env={**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0", **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired as timeout:
        raise DashboardsError(f"{what} did not finish in {timeout_s:.0f} s (in {cwd})") from timeout
    output = _ANSI.sub("", result.stdout or "")
    if result.returncode != 0:
        raise DashboardsError(f"{what} failed (exit {result.returncode}, in {cwd}):\n{_tail(output)}")
    return output


def _tail(output: str, lines: int = 40) -> str:
    return "\n".join(output.strip().splitlines()[-lines:])


def _check_warehouse(env: Environment) -> None:
    if not env.is_motherduck and not env.warehouse_path.is_file():
        raise DashboardsError(
            f"the {env.name} warehouse {env.warehouse} does not exist yet: run `elt run` (or `dbt build`) first"
        )


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _working_copy(project_dir: Path, work: Path, generated: Mapping[str, str], live_pages: bool = False) -> Path:
    """The project's own files copied to `work` with the `generated` source queries written beside the others,
    sharing the checkout's `node_modules` (a symlink); with `live_pages`, `pages/` is a symlink to the checkout's
    pages, so `evidence dev` reloads edits to them."""
    for name in _COPIED:
        target, source = work / name, project_dir / name
        _remove(target)
        if name == "pages" and live_pages:
            work.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source.resolve(), target_is_directory=True)
        elif source.is_dir():
            shutil.copytree(source, target)
        else:
            work.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    for name, sql in generated.items():
        (work / "sources" / SOURCE / f"{name}.sql").write_text(sql)
    modules = work / "node_modules"
    if not modules.is_symlink():
        _remove(modules)
        modules.symlink_to((project_dir / "node_modules").resolve(), target_is_directory=True)
    shutil.rmtree(work / "build", ignore_errors=True)
    return work


def build(env: Environment, project_dir: Path = PROJECT_DIR, timeout_s: float = 300) -> BuiltSite:
    """Run every source query against `env`'s warehouse and build the static site into `site_dir(env)`.

    Strict (`evidence sources --strict`, `evidence build:strict`): a failing source or page query fails the build
    with Evidence's own report of it, and the site built before stays as it was."""
    started = time.monotonic()
    _check_warehouse(env)
    generated = generated_queries(env)
    check_queries(env, project_dir, generated)
    check_node()
    npm_installed = ensure_node_modules(project_dir)
    site = site_dir(env)
    queries = (*source_queries(project_dir), *generated)
    work = _working_copy(project_dir, site.parent / "project", generated)
    variables = evidence_env(env, work / "sources" / SOURCE)
    evidence = str(work / "node_modules" / ".bin" / "evidence")
    try:
        _run([evidence, "sources", "--strict"], cwd=work, env=variables, what="evidence sources", timeout_s=timeout_s)
    except DashboardsError as error:
        raise DashboardsError(f"{error}\n{OFFLINE_BLOCKER}") from None
    _run([evidence, "build:strict"], cwd=work, env=variables, what="evidence build:strict", timeout_s=timeout_s)
    _replace(work / "build", site)
    return BuiltSite(
        site=site,
        pages=tuple(pages(work)),
        source_queries=tuple(sorted(queries)),
        npm_installed=npm_installed,
        seconds=time.monotonic() - started,
    )


def _replace(built: Path, site: Path) -> None:
    """Move the new site into place; the old one is removed only once the new one is complete."""
    if not (built / "index.html").is_file():
        raise DashboardsError(f"evidence build reported success but wrote no {built / 'index.html'}")
    incoming = site.with_name(site.name + ".new")
    shutil.rmtree(incoming, ignore_errors=True)
    shutil.move(str(built), incoming)
    outgoing = site.with_name(site.name + ".old")
    shutil.rmtree(outgoing, ignore_errors=True)
    if site.exists():
        site.rename(outgoing)
    incoming.rename(site)
    shutil.rmtree(outgoing, ignore_errors=True)


def dev_command(
    env: Environment, project_dir: Path = PROJECT_DIR, port: int = 3100
) -> tuple[list[str], dict[str, str], Path]:
    """The command, variables and folder of `evidence dev`, after installing the packages and running the source
    queries once: in a working copy beside the site (`<ELT_DATA_DIR>/dashboards/<env>/dev`) that holds the
    generated queries and links `pages/` to the checkout's, so edits to pages reload live; a changed source query
    takes effect at the next `elt dashboards dev`."""
    _check_warehouse(env)
    check_node()
    ensure_node_modules(project_dir)
    work = _working_copy(project_dir, site_dir(env).parent / "dev", generated_queries(env), live_pages=True)
    variables = evidence_env(env, work / "sources" / SOURCE)
    evidence = str(work / "node_modules" / ".bin" / "evidence")
    _run([evidence, "sources"], cwd=work, env=variables, what="evidence sources", timeout_s=900)
    return [evidence, "dev", "--port", str(port), "--host", "127.0.0.1"], {**os.environ, **variables}, work
