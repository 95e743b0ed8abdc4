"""`elt`: run the pipeline through Dagster, open the Dagster UI, and show the resolved environment."""

import os
import sys
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from orchestration.environment import EnvironmentConfigError, resolve, source_settings

DAGSTER_YAML = """\
# Written by `elt` for the local Dagster instance.
telemetry:
  enabled: false
concurrency:
  pools:
    default_limit: 1  # one writer per DuckDB warehouse (pool `duckdb_warehouse`)
"""

console = Console()


def prepare_dagster_home(dagster_home: Path) -> Path:
    dagster_home.mkdir(parents=True, exist_ok=True)
    config = dagster_home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    return dagster_home


@dataclass(frozen=True)
class RunSummary:
    success: bool
    failed_steps: list[str]
    checks_passed: int
    checks_failed: list[str]
    table_rows: list[tuple[str, int]]
    warehouse: str
    runs: list[str] = field(default_factory=list)  # what each Dagster run loaded, in order

    @property
    def ok(self) -> bool:
        return self.success and not self.checks_failed


def warehouse_row_counts(location: str) -> list[tuple[str, int]]:
    """Rows in every raw table and mart (dlt's bookkeeping tables left out)."""
    import duckdb

    with duckdb.connect(location, read_only=True) as con:
        tables = con.sql(
            """
            select table_schema, table_name from information_schema.tables
            where table_catalog = current_database()
              and ((table_schema like 'raw\\_%' escape '\\' and table_schema not like '%\\_staging' escape '\\')
                   or table_schema = 'marts')
              and table_name not like '\\_dlt\\_%' escape '\\'
            order by table_schema like 'raw%' desc, table_schema, table_name
            """
        ).fetchall()
        return [
            (f"{schema}.{table}", con.sql(f'select count(*) from "{schema}"."{table}"').fetchone()[0])
            for schema, table in tables
        ]


def contiguous_ranges(keys: Sequence[str], wanted: Collection[str]) -> list[tuple[str, str]]:
    """The wanted keys as (first, last) runs of neighbours in `keys`' order: one Dagster run per range."""
    ranges: list[tuple[str, str]] = []
    start = previous = None
    for key in keys:
        if key in wanted:
            start, previous = start or key, key
        elif start is not None:
            ranges.append((start, previous))
            start = None
    if start is not None:
        ranges.append((start, previous))
    return ranges


def run_pipeline(
    env=None,
    sources=None,
    instance=None,
    log_level: str = "INFO",
    nasa_window: tuple[str, str] | None = None,
) -> RunSummary:
    """Materialize the whole asset graph once, in this process, with the production definitions.

    Three kinds of run, as the schedules and sensor would launch them: the share-price files that are new or
    changed since their last load (one run per range of partitions; none when nothing changed), the NeoWs feed
    days of `nasa_window` (first and last day; default `run_window()`: the recorded demo days, or the days ending
    yesterday) in one run over the range, then every unpartitioned asset: the shop tables and dbt.
    """
    import dagster as dg

    from orchestration.definitions import ALL_ASSETS_JOB, build_definitions
    from orchestration.files.definitions import FILES_LOAD_JOB
    from orchestration.files.partitions import pending_drop_files, share_price_partitions
    from orchestration.nasa.definitions import NASA_DAILY_JOB
    from orchestration.nasa.partitions import run_window

    env = env or resolve()
    sources = sources or source_settings()
    if instance is None:
        prepare_dagster_home(env.dagster_home)
        instance = dg.DagsterInstance.get()
    defs = build_definitions(env, sources)
    planned: list[tuple[str, str, dict[str, str]]] = []
    pending = pending_drop_files(instance, sources.files_drop_location)
    for first, last in contiguous_ranges(instance.get_dynamic_partitions(share_price_partitions.name), pending):
        planned.append((FILES_LOAD_JOB, f"files {first}..{last}", _range_tags(first, last)))
    first_day, last_day = nasa_window or run_window(defs.resources["nasa_api"], env)
    planned.append((NASA_DAILY_JOB, f"NeoWs days {first_day}..{last_day}", _range_tags(first_day, last_day)))
    planned.append((ALL_ASSETS_JOB, "shop tables and dbt build", {}))

    success, failed_steps, evaluations, runs = True, [], [], []
    for job_name, what, tags in planned:
        result = defs.resolve_job_def(job_name).execute_in_process(
            instance=instance,
            raise_on_error=False,
            tags=tags,
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        )
        runs.append(f"{what}: {'ok' if result.success else 'FAILED'}")
        success &= result.success
        failed_steps += [event.step_key for event in result.all_events if event.is_step_failure]
        evaluations += result.get_asset_check_evaluations()
    checks_failed = sorted(f"{'/'.join(e.asset_key.path)}: {e.check_name}" for e in evaluations if not e.passed)
    rows = warehouse_row_counts(env.warehouse) if env.is_motherduck or Path(env.warehouse).exists() else []
    return RunSummary(
        success=success,
        failed_steps=failed_steps,
        checks_passed=sum(1 for e in evaluations if e.passed),
        checks_failed=checks_failed,
        table_rows=rows,
        warehouse=env.warehouse,
        runs=runs,
    )


def _range_tags(first: str, last: str) -> dict[str, str]:
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


def print_summary(summary: RunSummary) -> None:
    for run in summary.runs:
        console.print(f"run: {run}")
    table = Table(title="ELT run summary", show_lines=False)
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, count in summary.table_rows:
        table.add_row(name, f"{count:,}")
    console.print(table)
    status = "[green]passed[/green]" if not summary.checks_failed else "[red]FAILED[/red]"
    passed, failed = summary.checks_passed, len(summary.checks_failed)
    console.print(f"asset checks (dbt tests, file integrity): {passed} passed, {failed} failed -> {status}")
    for failed in summary.checks_failed:
        console.print(f"  [red]failed[/red] {failed}")
    for step in summary.failed_steps:
        console.print(f"  [red]step failed[/red] {step}")
    console.print(f"warehouse: {summary.warehouse}")
    console.print("[green]OK[/green]" if summary.ok else "[red]the run failed: see above[/red]")


@click.group()
def main() -> None:
    """The ELT platform: extract with dlt and Sling, transform with dbt, orchestrate with Dagster."""


@main.command()
def run() -> None:
    """Run the whole pipeline (every extract and `dbt build`) through Dagster, then print a summary."""
    try:
        summary = run_pipeline()
    except EnvironmentConfigError as error:
        raise click.ClickException(str(error)) from error
    print_summary(summary)
    sys.exit(0 if summary.ok else 1)


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("dagster_args", nargs=-1, type=click.UNPROCESSED)
def dev(dagster_args: tuple[str, ...]) -> None:
    """Start the Dagster UI (`dagster dev`) on this environment's instance."""
    env = resolve()
    prepare_dagster_home(env.dagster_home)
    dagster = Path(sys.executable).parent / "dagster"
    os.execv(str(dagster), [str(dagster), "dev", "-m", "orchestration.definitions", *dagster_args])


@main.command(name="env")
def show_env() -> None:
    """Print the resolved environment, its warehouse and dbt target, and which variables decided them."""
    try:
        env = resolve()
    except EnvironmentConfigError as error:
        raise click.ClickException(str(error)) from error
    console.print(f"environment: {env.name}")
    console.print(f"warehouse:   {env.warehouse}")
    console.print(f"dbt target:  {env.dbt_target}")
    console.print(f"prod:        {env.prod_warehouse or '(not configured)'}")
    console.print(f"data dir:    {env.data_dir}")
    for reason in env.reasons:
        console.print(f"  because {reason}")
    for source, demo in source_settings().uses_demo.items():
        console.print(f"source {source}: {'bundled demo' if demo else 'configured'}")


def _register_subcommands() -> None:
    from benchmarks.cli import bench
    from orchestration.branch.cli import branch

    main.add_command(branch)
    main.add_command(bench)


_register_subcommands()
