"""What `elt run` prints, through the real console script with stdout piped (not a terminal), in a data dir of its
own: a line per finished step and dbt model, no colour codes, a summary that names the log file, and the log file
with dbt's and Dagster's whole log. One whole run on the demos serves the module's tests; a failing dbt test is a
second run on the same data dir after one bad raw row (slow); the formatter's handling of failures is also checked
on the real events of a small Dagster job in this process. The tests read the dbt manifest, not a source's name."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from rich.console import Console

from orchestration.lib.dbt import dbt_colour_environ, dbt_project
from orchestration.pipeline import PlannedRun
from orchestration.run_output import RunOutput, new_run_log

ELT = Path(sys.executable).parent / "elt"
ESC = "\x1b"
# what chooses the environment, points a source elsewhere or forces colour: the run starts from none of them
_UNSET = ("ELT_", "DAGSTER_", "NASA_API_KEY", "MOTHERDUCK_TOKEN", "NO_COLOR", "FORCE_COLOR", "DBT_USE_COLORS")
LOG_LINE = re.compile(r"^full log \(Dagster and dbt\): (.+)$", re.M)
DBT_NODE_RESULT = re.compile(r"^(\d+) of (\d+) (OK|PASS)\b", re.M)  # dbt's line for each node that finished well


def dbt_results(log: str) -> tuple[int, list[int]]:
    """How many nodes dbt ran (the on-run-start hooks apart: `1 of 1 OK hook`) and the numbers of those reported."""
    results = [(int(number), int(total)) for number, total, _ in DBT_NODE_RESULT.findall(log)]
    total = max(total for _, total in results)
    return total, sorted(number for number, of in results if of == total)


@dataclass(frozen=True)
class EltRun:
    data_dir: Path
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()

    @property
    def log_file(self) -> Path:
        found = LOG_LINE.findall(self.stdout)
        assert len(found) == 1, f"the summary names no log file:\n{self.stdout[-3000:]}"
        return Path(found[0])


def elt_run(data_dir: Path) -> EltRun:
    environ = {name: value for name, value in os.environ.items() if not name.startswith(_UNSET)}
    started = time.monotonic()
    result = subprocess.run(
        [str(ELT), "run"],
        env={**environ, "ELT_DATA_DIR": str(data_dir)},
        capture_output=True,  # stdout is a pipe, not a terminal
        text=True,
        timeout=900,
    )
    return EltRun(data_dir, result.returncode, result.stdout, result.stderr, time.monotonic() - started)


def dbt_models() -> list[dict]:
    manifest = json.loads(Path(dbt_project.manifest_path).read_text())
    return [node for node in manifest["nodes"].values() if node["resource_type"] == "model"]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> EltRun:
    """The first `elt run` on the demos, from an empty data dir."""
    run = elt_run(tmp_path_factory.mktemp("run_output") / "data")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    print(f"first `elt run`: {run.seconds:.0f} s, {len(run.lines)} lines")
    return run


def test_no_colour_codes_when_stdout_is_not_a_terminal(first_run: EltRun) -> None:
    assert ESC not in first_run.stdout and ESC not in first_run.stderr
    assert ESC not in first_run.log_file.read_text()


def test_a_line_per_dbt_model_and_none_of_dbts_or_dagsters_log(first_run: EltRun) -> None:
    models = dbt_models()
    for model in models:
        shown = [
            line for line in first_run.lines if re.match(rf"^  ok +\S+\.{re.escape(model['name'])} \(\w+\) \d", line)
        ]
        assert len(shown) == 1, f"{model['name']}: {shown or first_run.stdout}"
    assert not DBT_NODE_RESULT.search(first_run.stdout)
    assert " - dagster - " not in first_run.stdout + first_run.stderr
    # before the summary: the log's path, then a line per planned run, per step and per dbt model, each once
    progress = first_run.lines[1 : next(i for i, line in enumerate(first_run.lines) if line.startswith("run: "))]
    assert all(re.match(r"^(\[\d+/\d+\] |  ok +)\S", line) for line in progress), first_run.stdout
    assert len(set(progress)) == len(progress)
    dbt_nodes, _ = dbt_results(first_run.log_file.read_text())
    assert len(progress) * 3 < dbt_nodes, first_run.stdout  # dbt's tests are counted, not listed


def test_the_summary_names_the_log_file_which_holds_dbts_whole_log(first_run: EltRun) -> None:
    log_file = first_run.log_file
    assert log_file.parent == first_run.data_dir / "logs" and log_file.name.startswith("elt-run-")
    assert first_run.lines[0].endswith(f"full log in {log_file}")
    log = log_file.read_text()
    # every node dbt built or tested has its line, the totals and Dagster's own log lines are there too
    total, reported = dbt_results(log)
    assert reported == list(range(1, total + 1)), log[-3000:]
    assert "Running with dbt=" in log and re.search(r"^Done\. PASS=\d+", log, re.M)
    assert " - dagster - INFO - " in log
    assert len(first_run.lines) * 3 < len(log.splitlines())


def _nullable_source_column_with_a_not_null_test(warehouse: Path) -> tuple[str, str, str, str]:
    """(test name, schema, table, column) of a dbt not_null test on a source column the warehouse lets be NULL."""
    manifest = json.loads(Path(dbt_project.manifest_path).read_text())
    with duckdb.connect(str(warehouse), read_only=True) as con:
        nullable = set(
            con.sql(
                "select table_schema, table_name, column_name from information_schema.columns "
                "where is_nullable = 'YES' and table_catalog = current_database()"
            ).fetchall()
        )
    for test in sorted(manifest["nodes"].values(), key=lambda node: node["name"]):
        if test["resource_type"] != "test" or (test.get("test_metadata") or {}).get("name") != "not_null":
            continue
        sources = [manifest["sources"][node] for node in test["depends_on"]["nodes"] if node in manifest["sources"]]
        if len(sources) == 1:
            source = sources[0]
            table = source.get("identifier") or source["name"]
            if (source["schema"], table, test["column_name"]) in nullable:
                return test["name"], source["schema"], table, test["column_name"]
    raise AssertionError("no source column with a not_null test is nullable in the warehouse")


@pytest.mark.slow
def test_a_failing_dbt_test_is_shown_in_full(first_run: EltRun) -> None:
    """The same data dir again with a NULL where a dbt not_null test forbids one: the terminal names the test, the
    table and dbt's message, and the log file has dbt's report of it."""
    warehouse = first_run.data_dir / "warehouse" / "dev.duckdb"
    test, schema, table, column = _nullable_source_column_with_a_not_null_test(warehouse)
    with duckdb.connect(str(warehouse)) as con:
        con.sql(
            f'insert into "{schema}"."{table}" select * replace (null as "{column}") from "{schema}"."{table}" limit 1'
        )

    again = elt_run(first_run.data_dir)

    assert again.returncode == 1, again.stdout[-3000:] + again.stderr[-3000:]
    assert ESC not in again.stdout + again.stderr
    assert re.search(rf"^  FAIL +test {test} on {schema}\.{table}: 1 failing row$", again.stdout, re.M), again.stdout
    assert f"Failure in test {test} (" in again.stdout and "Got 1 result, configured to fail if != 0" in again.stdout
    assert again.lines[-1] == "the run failed: see above"
    assert again.log_file != first_run.log_file and f"Failure in test {test}" in again.log_file.read_text()


# -- the formatter on the real events of a small job: a failed check, a failed step with its cause, a skipped step


@dg.asset(key=["raw", "prices"], check_specs=[dg.AssetCheckSpec("prices_are_positive", asset=["raw", "prices"])])
def prices() -> dg.MaterializeResult:
    return dg.MaterializeResult(
        check_results=[
            dg.AssetCheckResult(
                passed=False,
                description="a price must be > 0",
                metadata={"failing_rows": 1, "sample": "2018-01-24.csv row 2: share_price -1.0"},
            )
        ]
    )


@dg.asset(key=["raw", "orders"])
def orders() -> None:
    try:
        raise ConnectionRefusedError("127.0.0.1:5432 refused the connection")
    except ConnectionRefusedError as error:
        raise RuntimeError("the shop database is unreachable: start it or set the shop's URL") from error


@dg.asset(key=["marts", "revenue"], deps=[orders])
def revenue() -> None:
    pass


def run_small_job(terminal: Console) -> str:
    """The small job through RunOutput as `elt run` drives it (a watcher on the run's events, the live status on a
    terminal); what the terminal got."""
    job = dg.define_asset_job("small", selection=dg.AssetSelection.all())
    defs = dg.Definitions(assets=[prices, orders, revenue], jobs=[job])
    output = RunOutput(terminal, io.StringIO())
    planned = PlannedRun(defs.resolve_job_def("small"), "small: every asset", {})
    output.planned(defs, [planned])
    run_id = str(uuid.uuid4())
    with dg.instance_for_test() as instance, output.live_status():
        output.starting(planned, run_id)
        instance.add_event_listener(run_id, output.event)
        result = defs.resolve_job_def("small").execute_in_process(
            instance=instance, run_id=run_id, raise_on_error=False
        )
    assert not result.success
    return terminal.file.getvalue()


def test_failures_are_shown_with_their_cause_and_what_was_not_built() -> None:
    shown = run_small_job(Console(file=io.StringIO(), width=100))
    assert ESC not in shown
    assert shown.splitlines()[0] == "[1/1] small: every asset"
    assert re.search(r"^  FAIL +check prices_are_positive on raw\.prices$", shown, re.M), shown
    assert "a price must be > 0" in shown and "sample: 2018-01-24.csv row 2: share_price -1.0" in shown
    assert re.search(r"^  FAIL +raw__orders$", shown, re.M), shown
    assert "RuntimeError: the shop database is unreachable: start it or set the shop's URL" in shown
    assert "caused by ConnectionRefusedError: 127.0.0.1:5432 refused the connection" in shown
    assert "Error occurred while executing" not in shown  # Dagster's wrapper, which says nothing
    assert re.search(r"^  skip +marts__revenue: not run, a step it depends on failed$", shown, re.M), shown
    assert re.search(r"^  skip +not materialized \(2\): marts\.revenue, raw\.orders$", shown, re.M), shown


def test_on_a_terminal_the_lines_are_coloured_unless_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    coloured = run_small_job(Console(file=io.StringIO(), width=100, force_terminal=True))
    assert "\x1b[31m" in coloured  # FAIL in red
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "", coloured)  # the status line's redraws remain in between
    assert "  FAIL  raw__orders\n" in plain and "caused by ConnectionRefusedError" in plain, plain
    monkeypatch.setenv("NO_COLOR", "1")
    uncoloured = run_small_job(Console(file=io.StringIO(), width=100, force_terminal=True))
    assert not re.search(r"\x1b\[[0-9;]*3\dm", uncoloured), uncoloured  # no foreground colour


# -- colour and the log files


def test_dbt_colours_only_a_terminal_without_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for name in ("NO_COLOR", "DBT_USE_COLORS", "DBT_USE_COLORS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert dbt_colour_environ() == {"DBT_USE_COLORS": "false", "DBT_USE_COLORS_FILE": "false"}
    monkeypatch.setattr(sys, "stdout", Terminal())
    assert dbt_colour_environ() == {"DBT_USE_COLORS": "true", "DBT_USE_COLORS_FILE": "false"}
    monkeypatch.setenv("NO_COLOR", "1")
    assert dbt_colour_environ()["DBT_USE_COLORS"] == "false"
    monkeypatch.setenv("DBT_USE_COLORS", "true")  # the user's own setting wins
    assert "DBT_USE_COLORS" not in dbt_colour_environ()


def test_run_logs_are_new_each_time_and_the_oldest_are_removed(tmp_path: Path) -> None:
    made = [new_run_log(tmp_path) for _ in range(3)]
    assert len(set(made)) == 3 and all(log.exists() for log in made)  # runs in the same second get files of their own
    newest = new_run_log(tmp_path, keep=2)
    assert sorted((tmp_path / "logs").iterdir()) == sorted([made[-1], newest])
