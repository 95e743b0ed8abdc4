"""`elt branch ...`: the PR branch lifecycle. Each command is what the GitHub workflow runs, and what the tests run."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from functools import wraps
from pathlib import Path

import click
from rich.console import Console

from orchestration.branch.clones import DEFAULT_MAX_AGE_DAYS, branch_environment, clone_store, sweep
from orchestration.branch.diff import DEFAULT_MEMORY_LIMIT, DEFAULT_SAMPLES, FAIL_KINDS
from orchestration.lib.environment import DBT_PROJECT_DIR, EnvironmentConfigError, resolve
from orchestration.lib.meta import publish_prod_state

# the dbt commands (create, build) import orchestration.branch.build, and with it dbt, only when they run
console = Console(soft_wrap=True)  # CI logs: one line per message, not wrapped at 80 columns

project_dir_option = click.option(
    "--project-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=DBT_PROJECT_DIR,
    show_default=True,
    help="The dbt project to build (the PR's checkout).",
)
state_option = click.option(
    "--state",
    "state_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="A folder with prod's manifest.json; default: the manifest prod published into the warehouse.",
)


@contextmanager
def _clear_errors() -> Iterator[None]:
    try:
        yield
    except EnvironmentConfigError as error:
        raise click.ClickException(str(error)) from error


def _command(function: Callable) -> Callable:
    @wraps(function)
    def wrapper(*args, **kwargs):
        with _clear_errors():
            return function(*args, **kwargs)

    return wrapper


@click.group()
def branch() -> None:
    """Clone prod for a pull request, build it, drop it, sweep leftovers."""


@branch.command()
@click.argument("branch_id")
@project_dir_option
@state_option
@_command
def create(branch_id: str, project_dir: Path, state_dir: Path | None) -> None:
    """Clone prod into the branch database (replacing an older clone of the same id) and point its views at it."""
    from orchestration.branch.build import repoint_views

    env = branch_environment(branch_id)
    clone = clone_store(env).create(branch_id)
    console.print(f"cloned {env.prod_warehouse} -> {clone.location}")
    views = repoint_views(env, project_dir, state_dir)
    if not views.ok:
        raise click.ClickException("the clone exists, but recreating its views failed: see dbt's log above")
    console.print(f"views recreated in the clone: {views.statuses.get('success', 0)}")


@branch.command()
@click.argument("branch_id")
@project_dir_option
@state_option
@click.option("--full", is_flag=True, help="Build every model, not only what changed against prod.")
@_command
def build(branch_id: str, project_dir: Path, state_dir: Path | None, full: bool) -> None:
    """`dbt build --target branch` in the clone: `state:modified+` against prod's manifest, or everything."""
    from orchestration.branch.build import build_branch

    env = branch_environment(branch_id)
    result, state = build_branch(env, project_dir, state_dir, full)
    mode = f"state:modified+ against {state}" if state else "everything (no prod manifest)" if not full else "--full"
    console.print(f"branch {branch_id}: built {mode} in {env.warehouse}")
    console.print("  " + ", ".join(f"{status}: {count}" for status, count in sorted(result.statuses.items())))
    for unique_id in result.failed:
        console.print(f"  [red]failed[/red] {unique_id}")
    sys.exit(0 if result.ok else 1)


@branch.command()
@click.argument("branch_id")
@project_dir_option
@state_option
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["markdown", "json"]),
    default="markdown",
    show_default=True,
    help="What goes to stdout.",
)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write the JSON here.")
@click.option(
    "--markdown", "markdown_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write the Markdown here."
)
@click.option(
    "--fail-on",
    type=click.Choice(FAIL_KINDS),
    multiple=True,
    help="Exit 1 when this kind of change occurs (repeatable): rows added, removed or changed in a model, or a "
    "schema change (a column added, removed or retyped, a model added or removed).",
)
@click.option(
    "--samples", type=click.IntRange(min=0), default=DEFAULT_SAMPLES, show_default=True, help="Sample rows per kind."
)
@click.option(
    "--memory-limit",
    default=DEFAULT_MEMORY_LIMIT,
    show_default=True,
    help="DuckDB's memory limit; beyond it, it spills.",
)
@_command
def diff(
    branch_id: str,
    project_dir: Path,
    state_dir: Path | None,
    output_format: str,
    json_path: Path | None,
    markdown_path: Path | None,
    fail_on: tuple[str, ...],
    samples: int,
    memory_limit: str,
) -> None:
    """Compare the clone with prod for every model the build selects (and models added or removed): schema, row
    counts, rows added, removed and changed by key. Prod is only read."""
    from orchestration.branch.diff import diff_branch, failures, to_markdown

    env = branch_environment(branch_id)
    report = diff_branch(env, project_dir, state_dir, memory_limit=memory_limit, samples=samples)
    as_json = json.dumps(report.to_json(), indent=2, default=str) + "\n"
    markdown = to_markdown(report)
    for path, text in ((json_path, as_json), (markdown_path, markdown)):
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    click.echo(as_json if output_format == "json" else markdown, nl=False)
    if found := failures(report, fail_on):
        for line in found:
            click.echo(f"elt branch diff: --fail-on {line}", err=True)
        sys.exit(1)


@branch.command()
@click.argument("branch_id")
@_command
def drop(branch_id: str) -> None:
    """Drop the branch's clone. Refuses prod and any database `elt branch create` did not make."""
    env = branch_environment(branch_id)
    dropped = clone_store(env).drop(branch_id)
    console.print(f"dropped {env.warehouse}" if dropped else f"no clone for branch {branch_id}: nothing to drop")


def _ids(text: str | None) -> set[str] | None:
    return None if text is None else {part for part in re.split(r"[\s,]+", text) if part}


@branch.command(name="sweep")
@click.option(
    "--open-prs",
    help="Ids of the open PRs (space or comma separated; '' = none is open). A clone not among them is dropped. "
    "Unset: only age decides.",
)
@click.option("--max-age-days", type=click.IntRange(min=0), default=DEFAULT_MAX_AGE_DAYS, show_default=True)
@click.option("--dry-run", is_flag=True, help="Only say what would be dropped.")
@_command
def sweep_command(open_prs: str | None, max_age_days: int, dry_run: bool) -> None:
    """Drop clones of this prod whose PR is closed or that are older than --max-age-days."""
    env = resolve()
    decisions = sweep(env, _ids(open_prs), timedelta(days=max_age_days), dry_run=dry_run)
    verb = "would drop" if dry_run else "dropped"
    for decision in decisions:
        console.print(f"{verb if decision.drop else 'kept'} {decision.clone.location}: {decision.reason}")
    console.print(f"{sum(d.drop for d in decisions)} of {len(decisions)} clones {verb}")


@branch.command(name="publish-state")
@click.option(
    "--manifest",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=DBT_PROJECT_DIR / "target" / "manifest.json",
    show_default=True,
    help="The manifest.json of the prod dbt build that just ran.",
)
@_command
def publish_state(manifest: Path) -> None:
    """(prod) Store prod's dbt manifest in the prod warehouse: every clone made afterwards compares against it."""
    env = resolve()
    publish_prod_state(env, manifest)
    console.print(f"published {manifest} into {env.warehouse}")
