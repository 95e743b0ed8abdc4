"""What `elt run` prints: a line per finished step and dbt node, failures in full, and the whole log in a file.

While the pipeline runs, this process's stdout and stderr go to the run's log file (`<ELT_DATA_DIR>/logs/
elt-run-<time>.log`): dagster-dbt re-emits dbt's log on stdout and Dagster's console logger writes to stderr, so the
file holds both, interleaved as they happened, as a plain-text log without colour codes. The terminal gets what
`RunOutput` makes of Dagster's structured events (`RunWatcher.event`, orchestration/pipeline.py), the way dbt and
pytest report: a line per step and per dbt model, seed or snapshot as it finishes, every failed asset check (a dbt
test or an extract's own) and failed step with its error, and warnings. Colour only on a terminal and without NO_COLOR
(rich decides); dbt is told the same (orchestration/lib/dbt.py `dbt_colour_environ`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import time
import traceback
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TextIO

import dagster as dg
from rich.console import Console
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

from orchestration.lib.environment import data_dir_not_writable
from orchestration.pipeline import PlannedRun, RunWatcher

LOGS_FOLDER = "logs"
KEEP_RUN_LOGS = 20  # older `elt-run-*.log` files are removed when a run starts
MATERIALIZATION_TYPE = "dagster-dbt/materialization_type"  # dagster-dbt's DbtMetadataSet on each dbt asset
DBT_NODE_ID = "unique_id"  # metadata dagster-dbt puts on each materialization and check result it reports
DURATION = "Execution Duration"  # seconds, dagster-dbt's metadata on the same events
FAILED_ROWS = "dagster_dbt/failed_row_count"
# dagster-dbt's bookkeeping on a check result: the rest of a failed check's metadata is printed
_CHECK_BOOKKEEPING = {DBT_NODE_ID, DURATION, FAILED_ROWS, "invocation_id", "status"}
_MAX_METADATA_CHARS = 2_000
_MAX_NOT_BUILT_NAMED = 10

E = dg.DagsterEventType


def new_run_log(data_dir: Path, keep: int = KEEP_RUN_LOGS) -> Path:
    """A new, empty `<data_dir>/logs/elt-run-<local time>.log` (a suffix when two runs start in the same second);
    the oldest logs beyond `keep` are removed. A folder that cannot be written raises DataDirNotWritable."""
    folder = data_dir / LOGS_FOLDER
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for number in itertools.count(1):
            path = folder / (f"elt-run-{stamp}.log" if number == 1 else f"elt-run-{stamp}-{number}.log")
            with contextlib.suppress(FileExistsError):
                path.touch(exist_ok=False)
                break
    except OSError as error:
        why = f"{error.filename}: {error.strerror}" if error.filename else str(error)
        raise data_dir_not_writable(data_dir, why) from None
    older = sorted(folder.glob("elt-run-*.log"), key=_log_order)
    for log in older[: max(len(older) - keep, 0)]:
        log.unlink(missing_ok=True)
    return path


def _log_order(log: Path) -> tuple[int, int]:
    """Oldest first: by modification time, then by the suffix of logs started in the same second."""
    suffix = re.search(r"-\d{6}-(\d+)\.log$", log.name)
    return log.stat().st_mtime_ns, int(suffix.group(1)) if suffix else 1


@contextlib.contextmanager
def captured_run(log_path: Path, terminal: Console) -> Iterator[RunOutput]:
    """For the block: stdout and stderr go to `log_path` (line-buffered, so `tail -f` follows it and a killed run
    leaves what it wrote); the returned RunOutput writes to `terminal`, a console on the real stdout, and on a
    terminal keeps a status line below its lines: what runs now, how far it got."""
    with (
        log_path.open("a", buffering=1, encoding="utf-8") as log,
        contextlib.redirect_stdout(log),
        contextlib.redirect_stderr(log),
    ):
        output = RunOutput(terminal, log)
        with output.live_status():
            yield output


def asset_name(key: dg.AssetKey) -> str:
    """`<schema>.<table>`: an asset key is [schema, table] of where its data lands."""
    return ".".join(key.path)


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}s"


def _metadata_value(value: dg.MetadataValue) -> object:
    return getattr(value, "value", value)


@dataclass
class _RunState:
    """What one Dagster run has shown so far."""

    what: str
    planned: set[dg.AssetKey] = field(default_factory=set)
    materialized: set[dg.AssetKey] = field(default_factory=set)
    built_by_step: Counter[str] = field(default_factory=Counter)  # dbt nodes shown, per step
    checks_passed: Counter[str] = field(default_factory=Counter)
    checks_failed: Counter[str] = field(default_factory=Counter)
    failed_steps: list[str] = field(default_factory=list)
    started_steps: set[str] = field(default_factory=set)
    skipped_steps: set[str] = field(default_factory=set)


class RunOutput(RunWatcher):
    """Turns a pipeline pass's Dagster events into terminal lines (see the module docstring)."""

    def __init__(self, terminal: Console, log: TextIO) -> None:
        self.terminal = terminal
        self.log = log
        self.lines = 0  # terminal lines written
        self._kinds: dict[dg.AssetKey, str] = {}
        self._total = 0
        self._started = 0
        self._runs: dict[str, _RunState] = {}
        self._current: _RunState | None = None
        self._step_started: dict[str, float] = {}  # the steps running now, since when

    @contextlib.contextmanager
    def live_status(self) -> Iterator[None]:
        """On a terminal, a spinner line under the output (rich's Live, removed at the end) saying which steps run
        and how many dbt nodes and checks they finished; elsewhere nothing (a CI log gets the lines only)."""
        if not self.terminal.is_terminal:
            yield
            return
        spinner = Spinner("dots")

        def status() -> Spinner:  # asked for at each refresh (rich's thread), so a step's time goes on
            with contextlib.suppress(RuntimeError):  # a dict the run's thread changed while it was read
                spinner.update(text=self._status_text())
            return spinner

        # stdout and stderr stay where captured_run sent them; rich's own redirect would bring them back here
        with Live(
            get_renderable=status, console=self.terminal, transient=True, redirect_stdout=False, redirect_stderr=False
        ):
            yield

    # -- RunWatcher

    def planned(self, defs: dg.Definitions, runs: Sequence[PlannedRun]) -> None:
        graph = defs.resolve_asset_graph()
        for key in graph.materializable_asset_keys:
            kind = graph.get(key).metadata.get(MATERIALIZATION_TYPE)
            if kind is not None:
                self._kinds[key] = str(_metadata_value(kind))
        self._total = len(runs)

    def starting(self, run: PlannedRun, run_id: str) -> None:
        self._started += 1
        self._runs[run_id] = self._current = _RunState(run.what)
        self._step_started.clear()
        self._show(Text(f"[{self._started}/{self._total}] {run.what}", style="bold"))

    def event(self, entry: dg.EventLogEntry) -> None:
        """Never raises: a bug here must not fail the run it watches (the traceback goes to the log file)."""
        try:
            self._event(entry)
        except Exception:  # noqa: BLE001
            self.log.write(f"elt: could not show an event of run {entry.run_id}:\n{traceback.format_exc()}")

    # -- what the runner says (pool waits, runs it marked failed)

    def say(self, message: str) -> None:
        self.log.write(f"elt: {message}\n")
        self._show(Text(f"elt: {message}"))

    # -- events

    def _event(self, entry: dg.EventLogEntry) -> None:
        run = self._runs.get(entry.run_id)
        if run is None:
            return
        event = entry.dagster_event
        if event is None:
            if entry.level >= logging.WARNING:
                self._logged(run, entry)
            return
        step = event.step_key or ""
        data = event.event_specific_data
        if event.event_type == E.ASSET_MATERIALIZATION_PLANNED:
            run.planned.add(data.asset_key)
        elif event.event_type == E.ASSET_MATERIALIZATION:
            self._materialized(run, step, data.materialization)
        elif event.event_type == E.ASSET_CHECK_EVALUATION:
            self._checked(run, step, data)
        elif event.event_type == E.STEP_START:
            run.started_steps.add(step)
            self._step_started[step] = entry.timestamp
        elif event.event_type == E.STEP_SUCCESS:
            self._step_started.pop(step, None)
            self._status("ok", "green", f"{step} {_seconds(data.duration_ms / 1000)}{self._tally(run, step)}")
        elif event.event_type == E.STEP_FAILURE:
            self._step_started.pop(step, None)
            run.failed_steps.append(step)
            self._status("FAIL", "red", f"{step}{self._tally(run, step)}")
            self._detail(self._failure_text(data))
        elif event.event_type == E.STEP_SKIPPED:
            self._skipped(run, step)
        elif event.event_type == E.RUN_FAILURE:
            self._run_failed(run, event)

    def _logged(self, run: _RunState, entry: dg.EventLogEntry) -> None:
        if entry.step_key and entry.step_key not in run.started_steps and entry.level >= logging.ERROR:
            # Dagster says why a step does not start (a step it depends on failed) as an error of that step
            self._skipped(run, entry.step_key)
            return
        label, style = ("error", "red") if entry.level >= logging.ERROR else ("warn", "yellow")
        where = f"{entry.step_key}: " if entry.step_key else ""
        first, _, rest = entry.user_message.partition("\n")
        self._status(label, style, f"{where}{first}")
        self._detail(rest)

    def _skipped(self, run: _RunState, step: str) -> None:
        if step not in run.skipped_steps:
            run.skipped_steps.add(step)
            self._status("skip", "yellow", f"{step}: not run, a step it depends on failed")

    def _materialized(self, run: _RunState, step: str, materialization: dg.AssetMaterialization) -> None:
        run.materialized.add(materialization.asset_key)
        metadata = materialization.metadata
        if DBT_NODE_ID not in metadata:  # an extract's asset: its step's line says it
            return
        run.built_by_step[step] += 1
        kind = self._kinds.get(materialization.asset_key)
        duration = metadata.get(DURATION)
        self._status(
            "ok",
            "green",
            f"{asset_name(materialization.asset_key)}"
            f"{f' ({kind})' if kind else ''} {_seconds(_metadata_value(duration) if duration else None)}".rstrip(),
        )

    def _checked(self, run: _RunState, step: str, evaluation: dg.AssetCheckEvaluation) -> None:
        if evaluation.passed:
            run.checks_passed[step] += 1
            return
        run.checks_failed[step] += 1
        warn = evaluation.severity == dg.AssetCheckSeverity.WARN
        metadata = evaluation.metadata
        what = "test" if DBT_NODE_ID in metadata else "check"
        line = f"{what} {evaluation.check_name} on {asset_name(evaluation.asset_key)}"
        if FAILED_ROWS in metadata:
            rows = _metadata_value(metadata[FAILED_ROWS])
            line += f": {rows} failing row{'' if rows == 1 else 's'}"
        self._status("WARN" if warn else "FAIL", "yellow" if warn else "red", line)
        details = [evaluation.description or ""]
        for name, value in metadata.items():
            if name not in _CHECK_BOOKKEEPING:
                text = str(_metadata_value(value))
                details.append(
                    f"{name}: {text[:_MAX_METADATA_CHARS]}{' ...' if len(text) > _MAX_METADATA_CHARS else ''}"
                )
        self._detail("\n".join(detail for detail in details if detail))

    def _run_failed(self, run: _RunState, event: dg.DagsterEvent) -> None:
        if not run.failed_steps:  # a run that failed outside its steps (a resource, the executor)
            self._status("FAIL", "red", f"{run.what}: {event.message or 'the run failed'}")
        not_built = sorted(asset_name(key) for key in run.planned - run.materialized)
        if not_built:
            named = ", ".join(not_built[:_MAX_NOT_BUILT_NAMED])
            more = f" and {len(not_built) - _MAX_NOT_BUILT_NAMED} more" if len(not_built) > _MAX_NOT_BUILT_NAMED else ""
            self._status("skip", "yellow", f"not materialized ({len(not_built)}): {named}{more}")

    @staticmethod
    def _tally(run: _RunState, step: str) -> str:
        parts = []
        if run.built_by_step[step]:
            parts.append(f"{run.built_by_step[step]} dbt node{'' if run.built_by_step[step] == 1 else 's'} built")
        passed, failed = run.checks_passed[step], run.checks_failed[step]
        if passed or failed:
            parts.append(
                f"{passed} check{'' if passed == 1 else 's'} passed" + (f", {failed} failed" if failed else "")
            )
        return f" ({'; '.join(parts)})" if parts else ""

    @staticmethod
    def _failure_text(data) -> str:
        """The error of a failed step, as a user acts on it: the message, then each distinct cause's."""
        description = data.user_failure_data.description if data.user_failure_data else None
        lines: list[str] = [description] if description else []  # a dg.Failure's, without Dagster's class path
        error, depth = data.error, 0
        while error is not None and depth < 10:  # the error, then what caused it
            message = error.message.strip()
            # Dagster's wrapper around the error the step raised ("Error occurred while executing op ...") says nothing
            wrapper = error.cls_name == "DagsterExecutionStepExecutionError" and (error.cause or error.context)
            if message and not wrapper and not any(line in message or message in line for line in lines):
                lines.append(message if not lines else f"caused by {message}")
            error, depth = error.cause or error.context, depth + 1
        return "\n".join(lines)

    def _status_text(self) -> Text:
        run = self._current
        if run is None:
            return Text("loading the definitions", style="dim")
        if not self._step_started:
            return Text(f"{run.what}: waiting for a step to start", style="dim")
        now = time.time()
        parts = [f"{step} {now - started:.0f}s" for step, started in list(self._step_started.items())]
        counts = {
            "dbt nodes built": sum(run.built_by_step.values()),
            "checks passed": sum(run.checks_passed.values()),
            "failed": sum(run.checks_failed.values()),
        }
        done = ", ".join(f"{number} {what}" for what, number in counts.items() if number)
        return Text(f"running {', '.join(parts)}" + (f": {done}" if done else ""), style="dim")

    # -- writing

    def _status(self, label: str, style: str, text: str) -> None:
        line = Text("  ")
        line.append(f"{label:<5}", style=style)
        line.append(f" {text}")
        self._show(line)

    def _detail(self, text: str) -> None:
        """Indented under the line it explains, blank lines left out."""
        for line in text.splitlines():
            if line.strip():
                self._show(Text(f"        {line.rstrip()}"))

    def _show(self, text: Text) -> None:
        self.terminal.print(text, soft_wrap=True, highlight=False)
        self.lines += 1
