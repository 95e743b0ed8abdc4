"""`elt`: run the pipeline through Dagster, open the Dagster UI, show the resolved environment, and the `branch`,
`bench` and `new` command groups."""

import os
import signal
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from orchestration.lib.environment import REPO_ROOT, EnvironmentConfigError, resolve
from orchestration.lib.instance import prepare_dagster_home
from orchestration.pipeline import RunSummary, run_pipeline
from orchestration.run_output import captured_run, new_run_log

console = Console()


def print_summary(summary: RunSummary, log_path: Path | None = None, out: Console | None = None) -> None:
    out = out or console
    for run in summary.runs:
        out.print(f"run: {run}", soft_wrap=True, highlight=False, markup=False)
    table = Table(title="ELT run summary", show_lines=False)
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, count in summary.table_rows:
        table.add_row(name, f"{count:,}")
    out.print(table)
    status = "[green]passed[/green]" if not summary.checks_failed else "[red]FAILED[/red]"
    passed, failed = summary.checks_passed, len(summary.checks_failed)
    out.print(f"asset checks (dbt tests, file integrity): {passed} passed, {failed} failed -> {status}")
    for failed in summary.checks_failed:
        out.print(f"  [red]failed[/red] {escape(failed)}", soft_wrap=True)
    for step in summary.failed_steps:
        out.print(f"  [red]step failed[/red] {escape(step)}", soft_wrap=True)
    out.print(f"warehouse: {summary.warehouse}", soft_wrap=True, highlight=False, markup=False)
    if log_path is not None:
        out.print(f"full log (Dagster and dbt): {log_path}", soft_wrap=True, highlight=False, markup=False)
    out.print("[green]OK[/green]" if summary.ok else "[red]the run failed: see above[/red]")


@click.group()
def main() -> None:
    """The ELT platform: extract with dlt and Sling, transform with dbt, orchestrate with Dagster."""
    # SIGTERM (a supervisor, `timeout`, `kill`) stops any command as Ctrl-C does: cleanup runs, locks and pool
    # slots are released, the run in progress is marked failed
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def _given_log(log_file: Path) -> Path:
    try:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        log_file.touch()
    except OSError as error:
        raise click.ClickException(f"--log-file {log_file}: {error.strerror}") from None
    return log_file.resolve()


@main.command()
@click.option(
    "--log-file",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Append the run's full log (Dagster's and dbt's) to this file "
    "instead of a new <ELT_DATA_DIR>/logs/elt-run-<time>.log.",
)
def run(log_file: Path | None) -> None:
    """Run the whole pipeline (every extract and `dbt build`) through Dagster, then print a summary.

    Prints a line per finished step and dbt model and every failure; the full log goes to a file (see --log-file)."""
    terminal = Console(file=sys.stdout)  # the real stdout: during the run sys.stdout is the log file
    try:
        env = resolve()
        prepare_dagster_home(env.dagster_home)  # the first write under ELT_DATA_DIR, with its one-line error
        log_path = _given_log(log_file) if log_file else new_run_log(env.data_dir)
        terminal.print(f"elt run: {env.name}, full log in {log_path}", soft_wrap=True, highlight=False, markup=False)
        with captured_run(log_path, terminal) as output:
            summary = run_pipeline(say=output.say, watcher=output)
    except EnvironmentConfigError as error:
        raise click.ClickException(str(error)) from error
    except KeyboardInterrupt as interrupt:
        why = str(interrupt) or "interrupted"
        terminal.print(
            f"[red]stopped[/red]: {escape(why)}; `elt run` again loads what is still pending", soft_wrap=True
        )
        sys.exit(130)
    print_summary(summary, log_path, terminal)
    sys.exit(0 if summary.ok else 1)


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("dg_args", nargs=-1, type=click.UNPROCESSED)
def dev(dg_args: tuple[str, ...]) -> None:
    """Start the Dagster UI (`dg dev`, code location `elt_platform`) on this environment's instance."""
    try:
        env = resolve()
        prepare_dagster_home(env.dagster_home)
    except EnvironmentConfigError as error:
        raise click.ClickException(str(error)) from error
    dg_cli = Path(sys.executable).parent / "dg"
    os.chdir(REPO_ROOT)  # dg finds the project by its pyproject.toml
    os.execv(str(dg_cli), [str(dg_cli), "dev", *dg_args])


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, envvar="ELT_SERVE_HOST")
@click.option("--port", default=3000, show_default=True, envvar="ELT_SERVE_PORT", help="the webserver's port")
@click.option("--grpc-port", default=4000, show_default=True, envvar="ELT_SERVE_GRPC_PORT", help="the code server's")
def serve(host: str, port: int, grpc_port: int) -> None:
    """Run Dagster's production topology (code server, webserver, daemon) on a PostgreSQL instance."""
    from orchestration.serve import serve as run_topology

    try:
        code = run_topology(host, port, grpc_port, say=console.print)
    except EnvironmentConfigError as error:
        raise click.ClickException(str(error)) from error
    sys.exit(code)


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


@main.group()
def prod() -> None:
    """Prod's published state (Write-Audit-Publish, orchestration/lib/publish.py)."""


@prod.command()
def rollback() -> None:
    """Restore what prod published before its last publish (kept until the next one); again to undo it."""
    import duckdb

    from orchestration.lib import publish
    from orchestration.lib.environment import open_for_write

    try:
        env = resolve()
        if env.name != "prod":
            raise EnvironmentConfigError(f"`elt prod rollback` acts on prod (this is {env.name}): set ELT_ENV=prod")
        with duckdb.connect(open_for_write(env, env.warehouse)) as con:
            result = publish.rollback(con)
    except (EnvironmentConfigError, publish.PublishError, duckdb.IOException) as error:
        raise click.ClickException(str(error)) from error
    console.print(f"rolled back publish {result.publish_id - 1} of {env.warehouse}: {', '.join(result.models)}")


def _register_subcommands() -> None:
    from benchmarks.cli import bench
    from orchestration.branch.cli import branch
    from orchestration.dashboards.cli import dashboards
    from orchestration.scaffold import new

    main.add_command(branch)
    main.add_command(dashboards)
    main.add_command(bench)
    main.add_command(new)


_register_subcommands()
