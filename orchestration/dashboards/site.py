"""Build and serve the Evidence project in `dashboards/` on the warehouse of a resolved environment (no Dagster here:
`elt dashboards` calls it).

Where the data is comes from the `Environment` only: its warehouse becomes Evidence's `EVIDENCE_SOURCE__warehouse__*`
variables (a DuckDB file, opened read-only, or `md:<database>` with the token from `MOTHERDUCK_TOKEN`). npm packages
come from `dashboards/package-lock.json` through `npm ci`, run only when `node_modules` is missing or was installed
from another lock file. A build runs in a working copy of the project under the data dir, so builds of different
environments (and `elt dashboards dev` in the checkout) never share Evidence's `.evidence/` folder, and the new site
replaces the old one only when every source and page query succeeded.
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
from orchestration.lib.environment import REPO_ROOT, Environment

PROJECT_DIR = REPO_ROOT / "dashboards"
SOURCE = "warehouse"  # dashboards/sources/warehouse/: the one Evidence source, the environment's warehouse
LOCK_STAMP = ".elt-package-lock.sha256"  # in node_modules: the sha256 of the lock file it was installed from
_COPIED = ("package.json", "package-lock.json", "evidence.config.yaml", "pages", "sources")
_TABLE_REFERENCE = re.compile(r"\b(marts|staging)\.([a-z_][a-z0-9_]*)", re.IGNORECASE)
_PAGE_QUERY = re.compile(r"^```sql[ \t]+(?P<name>[A-Za-z_][\w]*)[^\n]*\n(?P<sql>.*?)^```", re.MULTILINE | re.DOTALL)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# what stops `evidence sources` offline (issue 16, blocked): Evidence's universal-sql writes each source query's rows
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
    """Every source query of the warehouse source, by name (the table pages query as `warehouse.<name>`)."""
    return {path.stem: path for path in sorted((project_dir / "sources" / SOURCE).glob("*.sql"))}


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


def check_queries(env: Environment, project_dir: Path = PROJECT_DIR) -> dict[str, int]:
    """Run every source query on `env`'s warehouse (read-only), then every page query on their results, as
    Evidence would; returns the rows of each source query. A query that fails (a mart column renamed, a table
    gone) raises DashboardsError naming the query file, or the page and query, before any site is touched."""
    queries = source_queries(project_dir)
    page_sql = page_queries(project_dir)
    rows = {}
    location = env.warehouse if env.is_motherduck else str(env.warehouse_path)
    # attached under its own catalog name (the file's stem, or the MotherDuck database): views refer to it so
    catalog = motherduck.database_name(location) if env.is_motherduck else env.warehouse_path.stem
    options = "" if env.is_motherduck else " (read_only)"
    with duckdb.connect() as con:
        con.execute(f"attach '{location.replace(chr(39), chr(39) * 2)}' as {_quote(catalog)}{options}")
        con.execute(f"create schema memory.{SOURCE}; use {_quote(catalog)}.main")
        for name, path in queries.items():
            readers = [page for page, sql in page_sql.items() if any(f"{SOURCE}.{name}" in q for q in sql.values())]
            try:
                con.execute(f"create table memory.{SOURCE}.{name} as {path.read_text()}")
            except duckdb.Error as error:
                where = path.relative_to(project_dir)
                raise DashboardsError(
                    f"dashboards: source query {where} failed on the {env.name} warehouse {env.warehouse} "
                    f"(read by page(s) {', '.join(readers) or 'none'}): {error}"
                ) from None
            rows[name] = con.execute(f"select count(*) from memory.{SOURCE}.{name}").fetchone()[0]
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


def _working_copy(project_dir: Path, work_dir: Path) -> Path:
    """The project's own files copied to `work_dir/project`, sharing the checkout's `node_modules` (a symlink)."""
    work = work_dir / "project"
    for name in _COPIED:
        target = work / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        source = project_dir / name
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            work.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    modules = work / "node_modules"
    if not modules.is_symlink():
        modules.unlink(missing_ok=True)
        modules.symlink_to(project_dir / "node_modules", target_is_directory=True)
    shutil.rmtree(work / "build", ignore_errors=True)
    return work


def build(env: Environment, project_dir: Path = PROJECT_DIR, timeout_s: float = 300) -> BuiltSite:
    """Run every source query against `env`'s warehouse and build the static site into `site_dir(env)`.

    Strict (`evidence sources --strict`, `evidence build:strict`): a failing source or page query fails the build
    with Evidence's own report of it, and the site built before stays as it was."""
    started = time.monotonic()
    _check_warehouse(env)
    check_queries(env, project_dir)
    check_node()
    npm_installed = ensure_node_modules(project_dir)
    site = site_dir(env)
    work = _working_copy(project_dir, site.parent)
    queries = source_queries(work)
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
        source_queries=tuple(queries),
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


def dev_command(env: Environment, project_dir: Path = PROJECT_DIR, port: int = 3100) -> tuple[list[str], dict]:
    """The command and variables of `evidence dev` in the checkout (live reload of pages/ and sources/), after
    installing the packages and running the source queries once."""
    _check_warehouse(env)
    check_node()
    ensure_node_modules(project_dir)
    variables = evidence_env(env, project_dir / "sources" / SOURCE)
    evidence = str(project_dir / "node_modules" / ".bin" / "evidence")
    _run([evidence, "sources"], cwd=project_dir, env=variables, what="evidence sources", timeout_s=900)
    return [evidence, "dev", "--port", str(port), "--host", "127.0.0.1"], {**os.environ, **variables}
