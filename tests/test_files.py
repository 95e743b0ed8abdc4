"""The CSV drops slice against real files (local and on a moto S3 server), real DuckDB files, real dlt loads and
real Dagster materializations and sensor evaluations."""

import csv
import shutil
import threading
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import dlt
import duckdb
import pytest

from extract.files.integrity import InvalidDropFile
from extract.files.source import DEMO_DROPS, share_price_files
from orchestration.defs.files.assets import INTEGRITY_CHECK, files_assets
from orchestration.defs.files.jobs import FILES_LOAD_JOB, files_load
from orchestration.defs.files.partitions import SHARE_PRICES_KEY, pending_drop_files, share_price_partitions
from orchestration.defs.files.resources import ShareDropsResource
from orchestration.defs.files.sensors import build_drops_sensor, read_cursor
from orchestration.lib.environment import resolve
from orchestration.lib.warehouse import WarehouseResource
from tests.fixtures_files import demo_share_price_rows
from tests.support import elt, query

HEADER = '"date","share_price","amount","spend","shift","spread"'


def _row(day: int = 1, price: str = "264.7700", date: str | None = None, amount: str = "1.0000") -> str:
    return f'"{date or f"2018/09/{day:02d}"}","{price}","{amount}","2.0000","3.0000","4.0000"'


def _csv(*rows: str, header: str = HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


def _load(drop_dir: Path | str, warehouse: Path, pipelines_dir: Path, **kwargs) -> None:
    """The source alone through a plain dlt pipeline, as the benchmark harness runs it."""
    pipeline = dlt.pipeline(
        "test_files",
        destination=dlt.destinations.duckdb(str(warehouse)),
        dataset_name="raw_files",
        pipelines_dir=str(pipelines_dir),
    )
    pipeline.run(share_price_files(drop_dir=str(drop_dir), **kwargs))


def _rows_per_file(warehouse: Path) -> dict[str, int]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return dict(con.sql("select _source_file, count(*) from raw_files.share_prices group by 1").fetchall())


def _data_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


@pytest.fixture
def drops(tmp_path: Path) -> Path:
    folder = tmp_path / "drops"
    shutil.copytree(DEMO_DROPS, folder)
    return folder


# ---------------------------------------------------------------- the dlt source, without Dagster


def test_loads_every_file_with_provenance_and_raw_strings(drops, tmp_path):
    warehouse = tmp_path / "w.duckdb"
    _load(drops, warehouse, tmp_path / "dlt")
    expected = {path.name: _data_rows(path) for path in drops.glob("*.csv")}
    assert _rows_per_file(warehouse) == {name: len(rows) for name, rows in expected.items()}
    first = expected["2018-01-22.csv"][0]
    with duckdb.connect(str(warehouse), read_only=True) as con:
        row = con.execute(
            "select date, share_price, spread, _loaded_at is not null from raw_files.share_prices "
            "where _source_file = '2018-01-22.csv' and _source_row = 1"
        ).fetchone()
    assert row == (first["date"], first["share_price"], first["spread"], True)


def test_reloading_a_changed_file_replaces_only_its_rows(drops, tmp_path):
    warehouse = tmp_path / "w.duckdb"
    _load(drops, warehouse, tmp_path / "dlt")
    _load(drops, warehouse, tmp_path / "dlt")  # a plain re-run: no duplicates
    before = _rows_per_file(warehouse)
    assert before == {path.name: len(_data_rows(path)) for path in drops.glob("*.csv")}
    changed = drops / "2018-01-22.csv"
    changed.write_text(_csv(_row(1), _row(2)))  # the file was re-dropped with 2 rows
    _load(drops, warehouse, tmp_path / "dlt", files=["2018-01-22.csv"])
    after = _rows_per_file(warehouse)
    assert after == {**before, "2018-01-22.csv": 2}


def test_reload_is_atomic_for_readers(tmp_path):
    """Through the platform's warehouse destination, a reader polling during a re-load sees the file's old rows or
    its new rows, never a mix or none (dlt alone runs the merge's DELETE and INSERT in autocommit on DuckDB)."""
    drops = tmp_path / "drops"
    drops.mkdir()
    big, small = 300_000, 100_000
    write = (
        "copy (select strftime(date '2018-09-28' - i::int, '%Y/%m/%d') as date, '1.5' as share_price, "
        "'1' as amount, '1' as spend, '1' as shift, '1' as spread from range({n}) t(i)) to '{path}' (header)"
    )
    with duckdb.connect() as con:
        con.execute(write.format(n=big, path=drops / "2018-01-01.csv"))
        con.execute(write.format(n=3, path=drops / "2018-01-02.csv"))
    warehouse = _warehouse(tmp_path)
    warehouse.dlt_pipeline("files_share_prices", "raw_files").run(share_price_files(drop_dir=str(drops)))
    with duckdb.connect() as con:
        con.execute(write.format(n=small, path=drops / "2018-01-01.csv"))

    seen: set[tuple[int, int]] = set()
    done = threading.Event()
    reader = duckdb.connect(warehouse.location)  # in-process: the same database instance as dlt's connection

    def read() -> None:
        cursor = reader.cursor()
        while not done.is_set():
            seen.add(
                cursor.execute(
                    "select count(*) filter (_source_file = '2018-01-01.csv'), "
                    "count(*) filter (_source_file = '2018-01-02.csv') from raw_files.share_prices"
                ).fetchone()
            )

    thread = threading.Thread(target=read)
    thread.start()
    try:
        source = share_price_files(drop_dir=str(drops), files=["2018-01-01.csv"])
        warehouse.dlt_pipeline("files_share_prices", "raw_files").run(source)
    finally:
        done.set()
        thread.join()
        reader.close()
    assert (big, 3) in seen, "the reader should have polled while the re-load ran"
    assert seen <= {(big, 3), (small, 3)}, f"a reader saw a half-replaced file: {sorted(seen)}"
    with duckdb.connect(warehouse.location, read_only=True) as con:
        assert con.execute("select count(*) from raw_files.share_prices").fetchone()[0] == small + 3


BAD_FILES = {
    "missing column": (
        _csv('"2018/09/28","1.0","1","1","1"', header=HEADER.replace(',"share_price"', "")),
        None,
        "share_price",
        "is missing from the header",
    ),
    "unparsable date": (_csv(_row(1), _row(date="28.09.2018")), 2, "date", "is not a date"),
    "unparsable number": (_csv(_row(1), _row(2), _row(3, amount="12,5")), 3, "amount", "is not a number"),
    "share_price zero": (_csv(_row(1, price="0.0000")), 1, "share_price", "must be > 0"),
    "share_price negative": (_csv(_row(1), _row(2, price="-3.5")), 2, "share_price", "must be > 0"),
    "ragged row": (_csv(_row(1), _row(2) + ',"7"'), 2, None, "Expected Number of Columns: 6 Found: 7"),
}


@pytest.mark.parametrize("case", BAD_FILES, ids=list(BAD_FILES))
def test_a_bad_file_names_file_row_and_column(case, drops, tmp_path):
    content, row, column, problem = BAD_FILES[case]
    (drops / "2018-01-24.csv").write_text(content)
    where = "header" if row is None else rf"row {row} \(line {row + 1}\)"
    where += f", column {column}" if column else ""
    with pytest.raises(Exception, match=rf"2018-01-24\.csv: .*{where}: .*{problem}"):
        _load(drops, tmp_path / "w.duckdb", tmp_path / "dlt")


# ---------------------------------------------------------------- Dagster: the partitioned asset and its check


def _warehouse(tmp_path: Path) -> WarehouseResource:
    return WarehouseResource.from_environment(resolve({"ELT_DATA_DIR": str(tmp_path / "data")}))


def test_many_files_load_as_a_few_batches_and_a_bad_file_leaves_its_batch(tmp_path, monkeypatch):
    """Files are staged in batches (one parquet, one dlt load job each) on several threads: every good file lands
    with its own row numbers, a refused file (a repeated date, a ragged row) is named and left out of its batch
    while the batch's other files load, and the load is the platform's bounded DuckDB destination."""
    import extract.files.source as files_source
    from extract.files.source import LoadLog

    drops = tmp_path / "drops"
    drops.mkdir()
    names = [f"2018-02-{day:02d}.csv" for day in range(1, 13)]
    for name in names:
        (drops / name).write_text(_csv(_row(1), _row(2), _row(3)))
    (drops / names[4]).write_text(_csv(_row(1), _row(2), _row(2)))  # a repeated trading date
    (drops / names[9]).write_text(_csv(_row(1), '"2018/09/02","1.0000"', _row(3)))  # 2 fields: not CSV
    monkeypatch.setattr(files_source, "BATCH_BYTES", 3 * (drops / names[0]).stat().st_size)  # 2-3 files a batch
    batches = files_source.plan_batches(files_source.list_drops(str(drops)))
    assert 4 <= len(batches) <= 6 and sum(len(batch) for batch in batches) == len(names)

    warehouse, log = _warehouse(tmp_path), LoadLog()
    pipeline = warehouse.dlt_pipeline("files_share_prices", "raw_files")
    info = pipeline.run(share_price_files(drop_dir=str(drops), log=log))
    good = {name: 3 for name in names if name not in (names[4], names[9])}
    assert _rows_per_file(Path(warehouse.location)) == good == log.rows
    assert sorted(log.invalid) == [names[4], names[9]]
    assert "row 3 (line 4), column date" in str(log.invalid[names[4]])
    assert "line 3" in str(log.invalid[names[9]]) or "row 2" in str(log.invalid[names[9]])
    jobs = [
        job for job in info.load_packages[0].jobs["completed_jobs"] if job.job_file_info.table_name == "share_prices"
    ]
    # one load job per batch, not per file; the batch DuckDB could not parse (the ragged file) is staged again file
    # by file, so its two good files are two jobs
    assert len(jobs) == len(batches) + 1
    with duckdb.connect(warehouse.location, read_only=True) as con:
        numbered = con.sql(
            "select _source_file, list(_source_row order by _source_row) = range(1, count(*) + 1) "
            "from raw_files.share_prices group by 1"
        ).fetchall()
    assert all(in_order for _, in_order in numbered) and len(numbered) == len(good)
    with pipeline.sql_client() as client:  # dlt's own connection to the warehouse
        [(limit, ordered)] = client.execute_sql(
            "select current_setting('memory_limit'), current_setting('preserve_insertion_order')"
        )
    assert limit == "488.2 MiB" and ordered is False  # 512MB (LOAD_MEMORY_LIMIT), order not kept


def _run_files(instance: dg.DagsterInstance, location: str, warehouse: WarehouseResource, keys: list[str]):
    """The `files_load` job over a range of file partitions, as a backfill or `elt run` launches it."""
    defs = dg.Definitions(
        assets=[files_assets],
        jobs=[files_load],
        resources={"share_drops": ShareDropsResource(location=location), "warehouse": warehouse},
    )
    return defs.resolve_job_def(FILES_LOAD_JOB).execute_in_process(
        instance=instance,
        raise_on_error=False,
        tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]},
    )


def _latest_metadata(instance: dg.DagsterInstance, partition: str) -> dict:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=SHARE_PRICES_KEY, asset_partitions=[partition]), limit=1
    ).records
    return {key: value.value for key, value in records[0].asset_materialization.metadata.items()}


def test_one_run_loads_good_files_and_fails_only_the_bad_one(drops, tmp_path):
    bad_rows = [_row(1), _row(2, price="-1"), _row(3, date="2018-09-03"), _row(4, price="abc")]
    (drops / "2018-01-23.csv").rename(drops / "2018-01-24.csv")
    (drops / "2018-01-23.csv").write_text(_csv(*bad_rows))  # sorts between the two good files
    warehouse = _warehouse(tmp_path)
    with dg.instance_for_test() as instance:
        keys = pending_drop_files(instance, str(drops))
        assert keys == sorted(path.name for path in drops.glob("*.csv"))
        result = _run_files(instance, str(drops), warehouse, keys)

        assert not result.success
        failure = next(event for event in result.all_events if event.is_step_failure)
        message = failure.step_failure_data.user_failure_data.description
        assert "2018-01-23.csv: 3 row(s) fail" in message and "row 2 (line 3), column share_price" in message
        good = {path.name: len(_data_rows(path)) for path in drops.glob("*.csv") if path.name != "2018-01-23.csv"}
        assert _rows_per_file(Path(warehouse.location)) == good
        assert instance.get_materialized_partitions(SHARE_PRICES_KEY) == set(good)

        [check] = result.get_asset_check_evaluations()
        assert check.check_name == INTEGRITY_CHECK and not check.passed
        metadata = {key: value.value for key, value in check.metadata.items()}
        assert metadata["failing_rows"] == 3 and metadata["files_failed"] == 1 and metadata["files_checked"] == 3
        assert "| 2018-01-23.csv | 3 | 4 | date | `2018-09-03` | is not a date" in metadata["sample"]

        loaded = _latest_metadata(instance, "2018-01-24.csv")
        assert loaded["rows_loaded"] == loaded["dagster/partition_row_count"] == good["2018-01-24.csv"]
        assert loaded["dagster/row_count"] == sum(good.values())
        assert [column.name for column in loaded["dagster/column_schema"].columns] == [
            *_data_rows(drops / "2018-01-24.csv")[0].keys(),
            "_source_file",
            "_source_row",
            "_loaded_at",
        ]
        assert loaded["source_fingerprint"].startswith("md5:")

        # the file is fixed (new content): it is pending again, loads, and the check passes
        assert pending_drop_files(instance, str(drops)) == ["2018-01-23.csv"]
        (drops / "2018-01-23.csv").write_text(_csv(_row(1), _row(2)))
        fixed = _run_files(instance, str(drops), warehouse, ["2018-01-23.csv"])
        assert fixed.success and fixed.get_asset_check_evaluations()[0].passed
        assert _rows_per_file(Path(warehouse.location)) == {**good, "2018-01-23.csv": 2}
        assert pending_drop_files(instance, str(drops)) == []


def test_a_touched_file_is_not_pending_but_a_rewritten_one_is(drops, tmp_path):
    warehouse = _warehouse(tmp_path)
    with dg.instance_for_test() as instance:
        keys = pending_drop_files(instance, str(drops))
        assert _run_files(instance, str(drops), warehouse, keys).success
        assert pending_drop_files(instance, str(drops)) == []
        touched = drops / "2018-01-22.csv"
        touched.write_bytes(touched.read_bytes())  # new mtime, same content
        assert pending_drop_files(instance, str(drops)) == []
        touched.write_text(_csv(_row(5)))
        assert pending_drop_files(instance, str(drops)) == ["2018-01-22.csv"]


# ---------------------------------------------------------------- the sensor


def _tick(instance: dg.DagsterInstance, location: str, cursor: str | None, max_runs_per_tick: int = 100):
    """One sensor evaluation; a new sensor definition each time, as after a restart (only the cursor carries)."""
    sensor = build_drops_sensor(FILES_LOAD_JOB, dg.DefaultSensorStatus.STOPPED, max_runs_per_tick=max_runs_per_tick)
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"share_drops": ShareDropsResource(location=location)}
    )
    result = sensor(context)
    return [request.partition_key for request in result.run_requests], result.cursor


def test_sensor_requests_new_and_changed_files_once(drops, tmp_path):
    warehouse = _warehouse(tmp_path)
    location = str(drops)
    with dg.instance_for_test() as instance:
        first, cursor = _tick(instance, location, None)
        names = sorted(path.name for path in drops.glob("*.csv"))
        assert first == names
        assert sorted(instance.get_dynamic_partitions(share_price_partitions.name)) == names
        assert _tick(instance, location, cursor)[0] == []  # requested, not loaded yet: not again

        assert _run_files(instance, location, warehouse, names).success
        requests, cursor = _tick(instance, location, cursor)
        assert requests == [] and read_cursor(cursor) == ({}, set())  # loaded: nothing in flight

        (drops / "2018-01-25.csv").write_text(_csv(_row(1)))
        (drops / "2018-01-22.csv").write_text(_csv(_row(7), _row(8)))  # same name, new content
        requests, cursor = _tick(instance, location, cursor)
        assert sorted(requests) == ["2018-01-22.csv", "2018-01-25.csv"]
        assert _tick(instance, location, cursor)[0] == []  # the cursor (from a "restarted" sensor) remembers
        (drops / "2018-01-25.csv").write_text(_csv(_row(1), _row(2)))  # changed again before its run
        assert _tick(instance, location, cursor)[0] == ["2018-01-25.csv"]


def test_sensor_requests_a_thousand_files_in_bounded_batches(tmp_path):
    drops = tmp_path / "drops"
    drops.mkdir()
    names = [f"{date(2018, 1, 1) + timedelta(days=number)}.csv" for number in range(1000)]
    for name in names:
        (drops / name).write_text(_csv(_row(1)))
    batch_size = 100
    requested, cursor = [], None
    with dg.instance_for_test() as instance:
        for _ in range(len(names) // batch_size):
            batch, cursor = _tick(instance, str(drops), cursor, max_runs_per_tick=batch_size)
            assert len(batch) == batch_size
            requested += batch
        assert _tick(instance, str(drops), cursor, max_runs_per_tick=batch_size)[0] == []
        assert len(instance.get_dynamic_partitions(share_price_partitions.name)) == len(names)
    assert requested == names  # each file once, oldest first


# ---------------------------------------------------------------- S3 (moto server on 127.0.0.1)


def test_s3_drops_are_listed_sensed_and_loaded(s3_drops, tmp_path):
    for path in sorted(DEMO_DROPS.glob("*.csv")):
        s3_drops.put(path.name, path.read_text())
    s3_drops.put("notes.txt", "not a drop")
    warehouse = _warehouse(tmp_path)
    with dg.instance_for_test() as instance:
        requests, cursor = _tick(instance, s3_drops.url, None)
        names = sorted(path.name for path in DEMO_DROPS.glob("*.csv"))
        assert requests == names
        assert _run_files(instance, s3_drops.url, warehouse, names).success
        expected = {path.name: len(_data_rows(path)) for path in DEMO_DROPS.glob("*.csv")}
        assert _rows_per_file(Path(warehouse.location)) == expected
        assert _latest_metadata(instance, names[0])["source_fingerprint"].startswith("etag:")

        s3_drops.put(names[0], _csv(_row(1)))  # re-uploaded with new content: a new ETag
        assert _tick(instance, s3_drops.url, cursor)[0] == [names[0]]
        assert _run_files(instance, s3_drops.url, warehouse, [names[0]]).success
        assert _rows_per_file(Path(warehouse.location)) == {**expected, names[0]: 1}
        assert pending_drop_files(instance, s3_drops.url) == []


def test_a_missing_drop_location_is_named(tmp_path):
    with pytest.raises(Exception, match=r"drop location .*nowhere does not exist \(set ELT_FILES_DROP_DIR"):
        _load(tmp_path / "nowhere", tmp_path / "w.duckdb", tmp_path / "dlt")


def test_invalid_drop_file_keeps_row_and_column(drops, tmp_path):
    """The error object carries what the check reports: the failing rows' count and a sample."""
    (drops / "2018-01-24.csv").write_text(_csv(_row(1, price="-1"), _row(2, price="-2"), _row(3)))
    with pytest.raises(Exception) as raised:
        _load(drops, tmp_path / "w.duckdb", tmp_path / "dlt", files=["2018-01-24.csv"])
    error = raised.value
    while not isinstance(error, InvalidDropFile):
        error = error.__cause__ or error.__context__
    assert error.failing_rows == 2
    assert [(problem.row, problem.column) for problem in error.sample] == [(1, "share_price"), (2, "share_price")]


# ---------------------------------------------------------------- the demo run and `elt run` with a bad drop


def test_the_demo_mart_holds_the_dropped_prices(demo_run):
    rows = {row["date"]: row["share_price"] for row in demo_share_price_rows()}
    day, price = sorted(rows.items())[-1]
    [(mart_price,)] = query(
        demo_run.warehouse,
        f"select share_price from marts.fct_share_prices_daily where trading_date = date '{day.replace('/', '-')}'",
    )
    assert float(mart_price) == float(price)


def test_elt_run_refuses_a_bad_drop_loads_the_rest_and_exits_non_zero(demo_run, tmp_path):
    """After the demo run, two new drops: one with a negative share price, which fails the integrity check before
    its load, and a good one. `elt run` names the bad file, row and column, loads the good one, and exits 1."""
    data_dir = demo_run.copy_to(tmp_path)
    drops = Path(shutil.copytree(DEMO_DROPS, tmp_path / "drops"))
    (drops / "2018-01-24.csv").write_text(_csv(_row(1, date="2018/10/16"), _row(2, price="-1.0000", date="2018/10/17")))
    (drops / "2018-01-25.csv").write_text(_csv(_row(1, date="2018/10/18"), _row(2, date="2018/10/19")))
    result = elt("run", settings={"ELT_DATA_DIR": str(data_dir), "ELT_FILES_DROP_DIR": str(drops)})

    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert "the run failed" in result.stdout
    assert "2018-01-24.csv" in output and "share_price" in output and "row 2" in output, output[-3000:]
    # a normal run is quiet: no Python warning and no Dagster warning (the bad file is an error, and said once)
    assert "Warning:" not in output and " - WARNING - " not in output, [
        line for line in output.splitlines() if "Warning:" in line or " - WARNING - " in line
    ][:5]
    loaded = dict(
        query(
            data_dir / "warehouse" / "dev.duckdb",
            "select _source_file, count(*) from raw_files.share_prices group by 1",
        )
    )
    assert "2018-01-24.csv" not in loaded
    assert loaded["2018-01-25.csv"] == 2
    assert sum(loaded.values()) == len(demo_share_price_rows()) + 2
