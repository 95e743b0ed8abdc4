"""What each stage runs, platform and reference side. Each function runs in its own child process (see measure.py),
times only the work itself, checks that the rows landed, and returns (seconds, rows).

The environment is prod with `ELT_PROD_DATABASE` on the run's own temp file: the benchmark measures what a production
run does, so dev-only data windows never shrink the work. Platform modules are imported inside the functions, after
the environment variables are set, because some of them resolve the environment at import.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import duckdb

from benchmarks.generate import quiet_connect

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT_TIMEOUT_SECONDS = 3 * 3600  # a hung step fails the benchmark instead of stalling it
DBT_TESTS_FAILED = 3  # a graph script's exit code when dbt built everything but some tests failed


def environment(run_dir: Path, extra: Mapping[str, str] = {}) -> dict[str, str]:
    """Variables that make the platform write `<run_dir>/warehouse.duckdb`, with its state in `<run_dir>/state`.

    Sling gets its own home too: its state database in ~/.sling is shared by every Sling on the machine, and a run
    was seen hanging on it while other Sling processes ran.
    """
    return {
        "ELT_ENV": "prod",
        "ELT_PROD_DATABASE": str(run_dir / "warehouse.duckdb"),
        "ELT_DATA_DIR": str(run_dir / "state"),
        "SLING_HOME_DIR": str(run_dir / "sling"),
        **extra,
    }


def _enter(run_dir: Path, extra: Mapping[str, str] = {}) -> Path:
    """Start from an empty run folder and point this process's environment at it; returns the warehouse path."""
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    os.environ.update(environment(run_dir, extra))
    return run_dir / "warehouse.duckdb"


def count_rows(warehouse: Path, tables: Mapping[str, int]) -> int:
    """The rows in each table; raises naming the table whose count is not the one the inputs give."""
    total = 0
    with quiet_connect(warehouse, read_only=True) as con:
        for table, expected in tables.items():
            try:
                (found,) = con.sql(f"select count(*) from {table}").fetchone()
            except duckdb.CatalogException:
                raise RuntimeError(f"{table} is missing from {warehouse}") from None
            if found != expected:
                raise RuntimeError(f"{table} in {warehouse} has {found:,} rows, the generated input {expected:,}")
            total += found
    return total


# ---------------------------------------------------------------- CSV -> raw table


def csv_platform(run_dir: Path, drop_dir: Path, expected: int) -> tuple[float, int]:
    """The share-price dlt source (DuckDB -> Arrow -> dlt) into a DuckDB file."""
    warehouse = _enter(run_dir)
    from benchmarks.bare import load_share_prices
    from orchestration.lib.environment import resolve

    env = resolve()
    start = time.perf_counter()
    load_share_prices(env, str(drop_dir))
    seconds = time.perf_counter() - start
    return seconds, count_rows(warehouse, {"raw_files.share_prices": expected})


def csv_reference(run_dir: Path, drop_dir: Path, expected: int) -> tuple[float, int]:
    """DuckDB `read_csv` of every file into one table: strings kept as written, plus the file name (as the platform)."""
    warehouse = _enter(run_dir)
    start = time.perf_counter()
    with quiet_connect(warehouse) as con:
        con.execute("create schema raw_files")
        con.execute(
            "create table raw_files.share_prices as select * from read_csv(?, header = true, all_varchar = true, "
            "filename = true)",
            [str(drop_dir / "*.csv")],
        )
    seconds = time.perf_counter() - start
    return seconds, count_rows(warehouse, {"raw_files.share_prices": expected})


# ---------------------------------------------------------------- PostgreSQL -> raw tables


def postgres_platform(run_dir: Path, url: str, expected: Mapping[str, int]) -> tuple[float, int]:
    """`replicate_shop`: a first load, so the bulk snapshot (DuckDB's postgres extension) copies every table, then
    Sling runs the platform's replication.yaml from the snapshot's high-water marks."""
    warehouse = _enter(run_dir)
    from extract.shop.replicate import replicate_shop

    start = time.perf_counter()
    replicate_shop(url, warehouse)
    seconds = time.perf_counter() - start
    return seconds, count_rows(warehouse, {f"raw_shop.{table}": rows for table, rows in expected.items()})


def postgres_scanner_path() -> str:
    """The postgres extension from the `duckdb-extension-postgres-scanner` wheel (loads offline): the platform's
    bulk snapshot path loads the same file."""
    from extract.shop.snapshot import postgres_extension_path

    return postgres_extension_path()


def _libpq_environment(url: str) -> dict[str, str]:
    """The URL as libpq's PG* variables: ATTACH takes no bound parameter, and SQL text could echo the password."""
    from extract.shop.snapshot import libpq_environment

    return libpq_environment(url)


def postgres_reference(run_dir: Path, url: str, expected: Mapping[str, int]) -> tuple[float, int]:
    """DuckDB's postgres extension: `CREATE TABLE AS SELECT * FROM` each shop table."""
    warehouse = _enter(run_dir, _libpq_environment(url))
    extension = postgres_scanner_path()
    start = time.perf_counter()
    with quiet_connect(warehouse) as con:
        con.execute(f"load '{extension}'")
        con.execute("attach '' as shop (type postgres, read_only)")  # libpq reads the PG* variables
        con.execute("create schema raw_shop")
        for table in expected:
            con.execute(f"create table raw_shop.{table} as select * from shop.data.{table}")
    seconds = time.perf_counter() - start
    return seconds, count_rows(warehouse, {f"raw_shop.{table}": rows for table, rows in expected.items()})


# ---------------------------------------------------------------- NeoWs -> raw table


def nasa_platform(run_dir: Path, recorded_dir: Path, expected: int) -> tuple[float, int]:
    """The NeoWs dlt source, fetching the generated days from the replay server over HTTP."""
    warehouse = _enter(run_dir)
    from benchmarks.bare import load_neows
    from orchestration.lib.environment import resolve

    env = resolve()
    start = time.perf_counter()
    load_neows(env, recorded_dir)
    seconds = time.perf_counter() - start
    return seconds, count_rows(warehouse, {"raw_nasa.asteroids": expected})


def nasa_reference(run_dir: Path, recorded_dir: Path, expected: int) -> tuple[float, int]:
    """DuckDB reads the same feed files and unnests one row per object (close approaches kept as JSON)."""
    warehouse = _enter(run_dir)
    start = time.perf_counter()
    with quiet_connect(warehouse) as con:
        con.execute("create schema raw_nasa")
        con.execute(
            """
            create table raw_nasa.asteroids as
            with neos as (
                select unnest(json_extract(content, '$.near_earth_objects.*[*]')) as neo from read_text(?)
            )
            select
                neo ->> 'neo_reference_id' as neo_reference_id,
                neo ->> 'name' as name,
                neo ->> 'nasa_jpl_url' as nasa_jpl_url,
                (neo ->> 'absolute_magnitude_h')::double as absolute_magnitude_h,
                neo -> 'estimated_diameter' as estimated_diameter,
                (neo ->> 'is_potentially_hazardous_asteroid')::boolean as is_potentially_hazardous_asteroid,
                (neo -> 'close_approach_data' ->> '$[0].close_approach_date')::date as close_approach_date,
                neo -> 'close_approach_data' as close_approach_data
            from neos
            """,
            [str(recorded_dir / "feed_*.json")],
        )
    seconds = time.perf_counter() - start
    return seconds, count_rows(warehouse, {"raw_nasa.asteroids": expected})


# ---------------------------------------------------------------- the whole graph


def graph_script(path: Path, recorded_dir: Path, dbt_target: Path, steps: tuple[str, ...]) -> Path:
    """A bash script running the given steps (`files`, `nasa`, `shop`, `dbt`) bare, in that order.

    Locations come from the environment (ELT_* variables, the shop URL); the script holds no secret.
    """
    python, dbt = sys.executable, Path(sys.executable).parent / "dbt"
    commands = {
        "files": f'"{python}" -m benchmarks.bare files',
        "nasa": f'"{python}" -m benchmarks.bare nasa "{recorded_dir}"',
        "shop": f'"{python}" -m benchmarks.bare shop',
        # dbt exits 1 when a test fails but the build ran: the script exits DBT_TESTS_FAILED so the run still counts
        "dbt": f'"{dbt}" build --quiet --no-use-colors --project-dir dbt_project --profiles-dir . --target prod '
        f'--target-path "{dbt_target}" --log-path "{dbt_target}/logs" || {{ code=$?; '
        f'[ "$code" -eq 1 ] && exit {DBT_TESTS_FAILED}; exit "$code"; }}',
    }
    lines = [
        "#!/usr/bin/env bash",
        "# Written by `elt bench`: the platform's work with no orchestrator.",
        "set -euo pipefail",
    ]
    lines += [f'cd "{REPO_ROOT}"', *(commands[step] for step in steps)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def run_script(
    script: Path, run_dir: Path, extra: Mapping[str, str], expected: Mapping[str, int], fresh: bool
) -> tuple[float, int, str]:
    """Run a graph script against `<run_dir>/warehouse.duckdb`; `fresh` starts from an empty folder.

    Failing dbt tests do not stop the benchmark (the row checks still must pass): they come back as a note.
    """
    if fresh:
        _enter(run_dir, extra)
    else:
        os.environ.update(environment(run_dir, extra))
    start = time.perf_counter()
    from extract.shop.connection import scrub

    try:
        result = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{script} did not finish in {SCRIPT_TIMEOUT_SECONDS} s against {run_dir}") from None
    seconds = time.perf_counter() - start

    output = scrub(result.stdout + result.stderr, extra.get("ELT_SHOP_POSTGRES_URL", ""))
    if result.returncode not in (0, DBT_TESTS_FAILED):
        raise RuntimeError(f"{script} failed (exit {result.returncode}):\n{output[-6000:]}")
    failures = sorted(
        {line.split("Failure in ", 1)[1].strip() for line in output.splitlines() if "Failure in " in line}
    )
    note = f"dbt build had failures: {'; '.join(failures) or output[-500:]}" if result.returncode else ""
    return seconds, *check_graph(run_dir / "warehouse.duckdb", expected, note)


def dagster_platform(
    run_dir: Path, extra: Mapping[str, str], recorded_dir: Path, expected: Mapping[str, int]
) -> tuple[float, int, str]:
    """The whole graph through `elt run`'s code path (`run_pipeline`) on a fresh Dagster instance.

    Timed from the import of the definitions (a `dagster` run loads them too) to the last materialization: one run
    over the new drop files, one over the generated feed days, then one for every unpartitioned asset (the shop
    tables and dbt).
    """
    from extract.nasa.replay import ReplayServer, recorded_days

    feed_days = sorted(recorded_days(recorded_dir))
    with ReplayServer(recorded_dir) as replay:
        _enter(run_dir, {**extra, "ELT_NASA_BASE_URL": replay.base_url})
        start = time.perf_counter()
        import dagster as dg

        from orchestration.pipeline import run_pipeline

        (run_dir / "dagster").mkdir()
        instance = dg.DagsterInstance.local_temp(str(run_dir / "dagster"), overrides={"telemetry": {"enabled": False}})
        # events still go to the instance; the console shows warnings only, or the benchmark's output drowns
        summary = run_pipeline(instance=instance, log_level="WARNING", partitions={"raw_nasa/asteroids": feed_days})
        seconds = time.perf_counter() - start
    # a failing dbt test fails the dbt step; the row checks below still catch work that did not happen
    failed = sorted(set(summary.failed_steps))
    note = f"Dagster steps failed: {', '.join(failed)}" if failed else ""
    return seconds, *check_graph(run_dir / "warehouse.duckdb", expected, note)


def check_graph(warehouse: Path, expected: Mapping[str, int], note: str) -> tuple[int, str]:
    """Raw tables must hold every generated row. A mart that dbt failed to build (the note says so) is added to
    the note instead of failing the benchmark, so a red dbt test shows in the results rather than hiding them."""
    raw = {table: rows for table, rows in expected.items() if table.startswith("raw_")}
    rows = count_rows(warehouse, raw)
    for table, wanted in expected.items():
        if table not in raw:
            try:
                count_rows(warehouse, {table: wanted})
            except RuntimeError as error:
                if not note:
                    raise
                note = f"{note}; {error}"
    return rows, note
