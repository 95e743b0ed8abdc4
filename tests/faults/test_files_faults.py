"""Faults in share-price drops (issue 15: items 2, 3, 7, 8, 9), through the real thing: one `elt run` pass
(`run_pipeline`, the files asset only) over a drop folder that holds good files and one file per fault, into a real
DuckDB file with real dlt and a real Dagster instance; then a re-run, a fix, a deletion and the sensor.

Each fault asserts the message (file, row, line, column, value or date) and that nothing was lost or duplicated: the
raw table holds exactly the good files' rows, compared by a content hash against the CSVs themselves."""

import csv
import hashlib
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import dlt
import duckdb
import pytest
from dlt.common.schema.exceptions import DataValidationError

from extract.files.encoding import find_non_utf8
from extract.files.source import COLUMNS, DEMO_DROPS, LoadLog, share_price_files
from orchestration.defs.files.assets import INTEGRITY_CHECK
from orchestration.defs.files.jobs import FILES_LOAD_JOB
from orchestration.defs.files.partitions import SHARE_PRICES_KEY, share_price_partitions
from orchestration.defs.files.resources import ShareDropsResource
from orchestration.defs.files.sensors import build_drops_sensor
from orchestration.pipeline import RunSummary, run_pipeline
from tests.support import use_platform_env

HEADER = b'"date","share_price","amount","spend","shift","spread"'
DATA_COLUMNS = ("date", "share_price", "amount", "spend", "shift", "spread")
_SELECT_DATA = ", ".join(f'"{column}"' for column in DATA_COLUMNS)
FILES_ONLY = dg.AssetSelection.assets(SHARE_PRICES_KEY).without_checks()  # the files job runs its own check


def _row(date: str = "2018/09/01", price: bytes = b"1.5000", amount: bytes = b"100.0000") -> bytes:
    return b'"' + date.encode() + b'","' + price + b'","' + amount + b'","2.0000","3.0000","4.0000"'


def _csv(*rows: bytes, header: bytes = HEADER) -> bytes:
    return b"\n".join([header, *rows]) + b"\n"


GOOD = {
    "2018-01-22.csv": (DEMO_DROPS / "2018-01-22.csv").read_bytes(),
    "2018-01-23.csv": (DEMO_DROPS / "2018-01-23.csv").read_bytes(),
    "2018-01-28.csv": _csv(_row("2018/09/01"), _row("2018/09/02"), _row("2018/09/03")),  # after the bad ones
}
# file -> (content, a pattern of what the run must say about it)
BAD = {
    # item 7: the name is the drop date
    "2018-01-24 (1).csv": (GOOD["2018-01-22.csv"], "is not named by its drop date, YYYY-MM-DD.csv"),
    "prices.csv": (GOOD["2018-01-23.csv"], "is not named by its drop date, YYYY-MM-DD.csv"),
    # item 3: a latin-1 byte in the header, and in a value
    "2018-01-24.csv": (
        _csv(_row(), header=HEADER + b',"qualit\xe9"'),
        r"the file fails the integrity check: 'qualité' in the header is not UTF-8: byte 0xe9 is 'é' in latin-1 "
        r"\(ISO-8859-1\)",
    ),
    "2018-01-25.csv": (
        _csv(_row("2018/09/01"), _row("2018/09/02", amount=b"12\xa0500")),
        r"1 row\(s\) fail the integrity check: row 2 \(line 3\), column amount: '12\\xa0500' is not UTF-8: "
        r"byte 0xa0 is NO-BREAK SPACE in latin-1 \(ISO-8859-1\)",
    ),
    # item 9: a trading date twice in one file
    "2018-01-26.csv": (
        _csv(_row("2018/09/01"), _row("2018/09/02"), _row("2018/09/01", price=b"1.6000")),
        r"1 row\(s\) fail the integrity check: row 3 \(line 4\), column date: '2018/09/01' repeats the trading "
        r"date of row 1 \(line 2\)",
    ),
    # item 2: values that stop parsing as the declared type
    "2018-01-27.csv": (
        _csv(_row("2018/09/01"), _row("2018/09/02", price=b"n/a")),
        r"1 row\(s\) fail the integrity check: row 2 \(line 3\), column share_price: 'n/a' is not a number",
    ),
    "2018-01-29.csv": (
        _csv(_row("2018/09/01", amount=b"12,5")),
        r"1 row\(s\) fail the integrity check: row 1 \(line 2\), column amount: '12,5' is not a number",
    ),
}


def _expected_rows(files: dict[str, bytes]) -> list[tuple]:
    """What the raw table must hold for these files, read from the CSVs themselves (values as written)."""
    rows = []
    for name, content in sorted(files.items()):
        for number, row in enumerate(csv.DictReader(content.decode().splitlines()), start=1):
            rows.append((name, number, *(row[column] for column in DATA_COLUMNS)))
    return rows


def _raw_rows(warehouse: str) -> list[tuple]:
    with duckdb.connect(warehouse, read_only=True) as con:
        return con.execute(
            f"select _source_file, _source_row, {_SELECT_DATA} "
            "from raw_files.share_prices order by _source_file, _source_row"
        ).fetchall()


def _content_hash(rows: list[tuple]) -> str:
    return hashlib.sha256("\n".join("|".join(map(str, row)) for row in rows).encode()).hexdigest()


def _run_messages(instance: dg.DagsterInstance, summary_runs: int) -> tuple[str, dict[str, str]]:
    """The newest `summary_runs` runs' step-failure descriptions (joined) and their check's `failed_files`."""
    failures, failed_files = [], {}
    for run in instance.get_runs(limit=summary_runs):
        for record in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
            data = record.dagster_event.step_failure_data
            failures.append(data.user_failure_data.description if data.user_failure_data else data.error.message)
        for record in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
            evaluation = record.dagster_event.event_specific_data
            if evaluation.check_name == INTEGRITY_CHECK and "failed_files" in evaluation.metadata:
                failed_files |= evaluation.metadata["failed_files"].value
    return "\n".join(failures), failed_files


@dataclass
class FaultyRun:
    drops: Path
    instance: dg.DagsterInstance
    summary: RunSummary
    failure: str  # the step failure's description
    failed_files: dict[str, str]  # the check's metadata: file -> message
    raw_rows: list[tuple]  # the raw table right after the run


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory: pytest.TempPathFactory):
    """One `elt run` (files asset only) over the good files and one file per fault: one run, one range."""
    root = tmp_path_factory.mktemp("faulty_drops")
    drops = root / "drops"
    drops.mkdir()
    for name, content in {**GOOD, **{name: content for name, (content, _) in BAD.items()}}.items():
        (drops / name).write_bytes(content)
    with pytest.MonkeyPatch.context() as monkeypatch, dg.instance_for_test() as instance:
        use_platform_env(monkeypatch, root / "data", ELT_FILES_DROP_DIR=str(drops))
        summary = run_pipeline(instance=instance, selection=FILES_ONLY, log_level="WARNING")
        failure, failed_files = _run_messages(instance, len(summary.runs))
        yield FaultyRun(drops, instance, summary, failure, failed_files, _raw_rows(summary.warehouse))


def test_one_run_loads_every_good_file_and_fails_naming_each_bad_one(faulty_run):
    summary = faulty_run.summary
    assert summary.runs[0] == "files_share_prices 2018-01-22.csv..prices.csv: FAILED"  # one run over every file
    assert not summary.success and summary.checks_failed == ["raw_files/share_prices: file_integrity"]
    assert f"{len(BAD)} of {len(GOOD) + len(BAD)} share-price file(s) failed the integrity check" in faulty_run.failure
    for name in BAD:
        assert f"{name}: " in faulty_run.failure
    # exactly the good files' rows, as written: nothing of a bad file, nothing lost, nothing twice
    assert faulty_run.raw_rows == _expected_rows(GOOD)
    # the good partitions materialized, each bad one failed
    statuses = faulty_run.instance.get_status_by_partition(
        SHARE_PRICES_KEY, sorted({**GOOD, **BAD}), share_price_partitions
    )
    assert {name for name, status in statuses.items() if status == dg.AssetPartitionStatus.MATERIALIZED} == set(GOOD)
    assert {name for name, status in statuses.items() if status == dg.AssetPartitionStatus.FAILED} == set(BAD)


@pytest.mark.parametrize("name", BAD, ids=list(BAD))
def test_each_bad_file_is_refused_naming_file_row_column(faulty_run, name):
    _, expected = BAD[name]
    message = faulty_run.failed_files[name]
    assert message.startswith(f"{name}: ")
    assert re.search(expected, message), message


def test_type_drift_never_becomes_a_variant_column_or_null(faulty_run):
    """`n/a` and `12,5` were refused above; the raw table kept exactly its declared columns, all text."""
    with duckdb.connect(faulty_run.summary.warehouse, read_only=True) as con:
        columns = dict(con.execute("select column_name, column_type from (describe raw_files.share_prices)").fetchall())
        nulls = con.execute(
            "select count(*) from raw_files.share_prices where share_price is null or date is null"
        ).fetchone()[0]
    assert columns == {
        **dict.fromkeys(DATA_COLUMNS, "VARCHAR"),
        "_source_file": "VARCHAR",
        "_source_row": "BIGINT",
        "_loaded_at": "TIMESTAMP WITH TIME ZONE",
    }
    assert nulls == 0


def test_the_dlt_contract_refuses_a_new_column_or_type(tmp_path):
    """The resource's schema contract freezes the table: a variant column or another type fails the load."""
    drops = tmp_path / "drops"
    shutil.copytree(DEMO_DROPS, drops)
    pipeline = dlt.pipeline(
        "contract", destination=dlt.destinations.duckdb(str(tmp_path / "w.duckdb")), pipelines_dir=str(tmp_path)
    )
    pipeline.run(share_price_files(drop_dir=str(drops), log=LoadLog()))
    for hint in ({"share_price__v_text": {"data_type": "text"}}, {"share_price": {"data_type": "double"}}):
        source = share_price_files(drop_dir=str(drops), log=LoadLog())
        source.resources["share_prices"].apply_hints(columns=hint)
        with pytest.raises(Exception) as raised:
            pipeline.run(source)
        assert isinstance(raised.value.__cause__ or raised.value.__context__, DataValidationError)
        assert next(iter(hint)) in str(raised.value)
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        described = con.execute("select column_name from (describe contract_dataset.share_prices)").fetchall()
    assert [column for (column,) in described] == list(COLUMNS)


def test_the_encoding_is_named():
    assert "Windows-1252" in find_non_utf8(_csv(_row(price=b"\x805"))).problem  # € in Windows-1252
    utf16 = _csv(_row()).decode().encode("utf-16")
    assert find_non_utf8(utf16).problem == "is not UTF-8: it looks saved as UTF-16; save it as UTF-8"
    assert find_non_utf8(b"\xef\xbb\xbf" + _csv(_row())) is None  # UTF-8 with a byte-order mark is fine


def _tick(instance: dg.DagsterInstance, location: str, cursor: str | None) -> dg.SensorResult:
    sensor = build_drops_sensor(FILES_LOAD_JOB, dg.DefaultSensorStatus.STOPPED)
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"share_drops": ShareDropsResource(location=location)}
    )
    return sensor(context)


def test_rerun_fix_and_removal_never_duplicate_and_removed_files_are_reported(faulty_run):
    """Runs last (it changes the drops): a re-run loads nothing twice; fixed and renamed files load; a loaded file
    deleted from the folder keeps its rows, and the sensor says so once as an observation and then in each tick."""
    instance, drops = faulty_run.instance, faulty_run.drops
    loads_before = instance.fetch_materializations(SHARE_PRICES_KEY, limit=100).records

    again = run_pipeline(instance=instance, selection=FILES_ONLY, log_level="WARNING")
    assert not again.success  # the bad files are still bad, and only they ran
    assert all(run.endswith("FAILED") for run in again.runs[:-1]) and not any("2018-01-22.csv" in r for r in again.runs)
    assert _content_hash(_raw_rows(again.warehouse)) == _content_hash(_expected_rows(GOOD))
    assert len(instance.fetch_materializations(SHARE_PRICES_KEY, limit=100).records) == len(loads_before)

    fixed = _csv(_row("2018/09/01"), _row("2018/09/02"))
    (drops / "2018-01-26.csv").write_bytes(fixed)  # the repeated date removed
    (drops / "prices.csv").rename(drops / "2018-01-30.csv")  # named by its drop date
    (drops / "2018-01-28.csv").unlink()  # loaded, then deleted

    tick = _tick(instance, str(drops), None)
    requested = {request.partition_key for request in tick.run_requests}
    assert {"2018-01-26.csv", "2018-01-30.csv"} <= requested and not requested & set(GOOD)
    [observation] = tick.asset_events
    assert observation.partition == "2018-01-28.csv" and "its rows stay" in observation.description

    loaded = run_pipeline(instance=instance, selection=FILES_ONLY, log_level="WARNING")
    renamed = {"2018-01-26.csv": fixed, "2018-01-30.csv": GOOD["2018-01-23.csv"]}
    assert _raw_rows(loaded.warehouse) == _expected_rows({**GOOD, **renamed})  # 2018-01-28.csv's rows kept
    warnings = [
        record.user_message
        for run in instance.get_runs(limit=len(loaded.runs))
        for record in instance.all_logs(run.run_id)
        if "no longer in the drop location" in record.user_message
    ]
    assert warnings and "2018-01-28.csv" in warnings[0]

    # the next ticks: nothing new to request, no second observation, the removal counted in the skip reason
    for _ in range(2):
        tick = _tick(instance, str(drops), tick.cursor)
        assert not tick.run_requests and not tick.asset_events
        assert "1 loaded file(s) are no longer in the drop location" in tick.skip_reason.skip_message
        assert "2018-01-28.csv" in tick.skip_reason.skip_message
    assert json.loads(tick.cursor)["removed"] == ["2018-01-28.csv"]

    # retracting it on purpose (docs/files.md): its rows deleted, its partition deleted; the ticks stop counting it
    with duckdb.connect(loaded.warehouse) as con:
        con.execute("delete from raw_files.share_prices where _source_file = '2018-01-28.csv'")
    instance.delete_dynamic_partition(share_price_partitions.name, "2018-01-28.csv")
    tick = _tick(instance, str(drops), tick.cursor)
    assert tick.skip_reason is None and json.loads(tick.cursor)["removed"] == []
    assert _raw_rows(loaded.warehouse) == _expected_rows({**GOOD, **renamed, "2018-01-28.csv": b""})
