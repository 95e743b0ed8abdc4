"""`elt bench` / `python -m benchmarks`: measure the platform against its references and print a table of ratios."""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import datetime
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from benchmarks.generate import SCALES
from benchmarks.harness import MEMORY_LIMIT_MIB, OPTIONAL_STAGES, STAGE_NAMES, Bench, results_json, stage_plan

console = Console(width=None if Console().is_terminal else 130)  # piped output: wide enough for the table


def planned_stages(only: tuple[str, ...] = ()) -> dict[str, str | None]:
    """What `elt bench --stage ...` would do here: each stage with why it will be skipped (None: it runs)."""
    return stage_plan(only or STAGE_NAMES)


def progress(message: str) -> None:
    console.print(f"[dim]{datetime.now():%H:%M:%S}[/dim] {message}", soft_wrap=True, highlight=False)


def print_table(results: dict) -> None:
    scale = results["scale"]
    table = Table(
        title=f"elt bench, scale {scale['name']}: {scale['csv_rows']:,} CSV rows, {scale['orders']:,} orders "
        f"(best of {results['repeat']})"
    )
    for column, justify in [
        ("stage", "left"),
        ("rows", "right"),
        ("platform rows/s", "right"),
        ("reference rows/s", "right"),
        ("ratio", "right"),
        ("target", "right"),
        ("met?", "center"),
        ("peak MiB", "right"),
    ]:
        table.add_column(column, justify=justify)
    verdict = {True: "[green]yes[/green]", False: "[red]no[/red]", None: "-"}
    for name, stage in results["stages"].items():
        table.add_row(
            name,
            f"{stage['rows']:,}",
            f"{stage['platform_rows_per_s']:,.0f}",
            f"{stage['reference_rows_per_s']:,.0f}",
            f"{stage['ratio']:.3f}x",
            stage["target"] or "-",
            verdict[stage["met"]],
            f"{stage['platform_peak_mib']:,.0f}",
        )
    memory = results["peak_memory"]
    table.add_row(
        "peak memory",
        "",
        "",
        "",
        "",
        f"< {MEMORY_LIMIT_MIB} MiB",
        verdict[memory["met"]],
        f"{memory['platform_peak_mib']:,.0f} ({memory['stage']})" if memory["stage"] else "-",
    )
    console.print(table)
    for name, stage in results["stages"].items():
        for note in stage["notes"]:
            console.print(f"[yellow]note[/yellow] {name}: {note}", soft_wrap=True, highlight=False)
    for name, reason in results["skipped"].items():
        console.print(f"[yellow]skipped[/yellow] {name}: {reason}", soft_wrap=True, highlight=False)


@click.command()
@click.option(
    "--scale",
    "scale_name",
    type=click.Choice(list(SCALES)),
    default="small",
    show_default=True,
    help="Data size: tiny (smoke test), demo, small (100k rows), 1m, 5m, 10m (10M CSV rows + 10M orders).",
)
@click.option(
    "--repeat", type=click.IntRange(min=1), default=3, show_default=True, help="Runs per side; the best counts."
)
@click.option(
    "--stage",
    "only",
    type=click.Choice(STAGE_NAMES + OPTIONAL_STAGES),
    multiple=True,
    help="Run only these stages (repeatable); default all but diff (`elt branch diff`) and automation "
    "(declarative automation's no-op / +1% orders cycles and the publish step), which run only when named. "
    "A stage whose demo source is not in extract/ is skipped.",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("bench_results.json"),
    show_default=True,
    help="Where the JSON results go.",
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep generated data, PostgreSQL and warehouses here and reuse them next time (default: a temp "
    "folder, removed at the end).",
)
def bench(scale_name: str, repeat: int, only: tuple[str, ...], output: Path, work_dir: Path | None) -> None:
    """Benchmark the platform against its references and print a table of ratios (stages whose demo source was
    deleted are skipped, and say so)."""
    work = work_dir.resolve() if work_dir else Path(tempfile.mkdtemp(prefix="elt-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        runner = Bench(SCALES[scale_name], work, repeat=repeat, only=only or STAGE_NAMES, progress=progress)
        runner.run()
        results = results_json(runner)
    finally:
        if work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    console.print(f"results: {output}")
