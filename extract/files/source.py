"""Share-price CSV drops -> dlt. One file per drop (`YYYY-MM-DD.csv`); reading is columnar, in DuckDB.

Raw values are kept as the file wrote them (VARCHAR: `2018/09/28`, `264.7700`); staging in dbt casts them. Each
row carries its provenance (`_source_file`, `_source_row`, `_loaded_at`). No rows pass through Python:

- files are staged in batches of about `BATCH_BYTES` of CSV: DuckDB streams a batch's files into one parquet file
  (`COPY ... TO`, each file with its header's columns and sniffing off), so a drop of many small files becomes a few
  large dlt load jobs (one INSERT each) instead of a job per file;
- `STAGING_THREADS` batches are staged at once, each on its own cursor of the reader's DuckDB (one memory limit for
  all), so the CSV parsing and the check use every core;
- the integrity check (extract/files/integrity.py) scans the batch's parquet once, grouped by file; a file that
  fails is then checked alone (which names its rows) and left out of the batch; a batch DuckDB cannot parse is
  staged again file by file, so the error names the file and line;
- dlt imports each batch's parquet as is.

Loading is delete-insert on `_source_file`: dlt's merge deletes and inserts in one transaction (with dlt's
`supports_transactions` on, as orchestration/lib/warehouse.py sets it), so re-loading a file replaces exactly its
rows, atomically, and leaves other files' rows alone. When none of the run's files has rows in the destination yet
(the usual case: new drops), the load appends instead: the same result without dlt's staging copy.
"""

from __future__ import annotations

import os
import re
import tempfile
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dlt
import duckdb
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from extract.files.drops import DropFile, list_drops, read_bytes, read_header, reader_connection
from extract.files.encoding import find_non_utf8
from extract.files.integrity import (
    SHARE_PRICE_COLUMNS,
    InvalidDropFile,
    Problem,
    check_header,
    check_name,
    check_share_prices,
    passing_files,
)

DEMO_DROPS = Path(__file__).parent / "demo_drops"
# CSV bytes staged into one parquet file, one dlt load job: large enough that a job's INSERT fills DuckDB row groups
# (122,880 rows) and runs on every core, small enough that the batches spread over the staging threads
BATCH_BYTES = 64 * 1024 * 1024
BATCH_MAX_FILES = 200  # and never more files than this in one batch (one SQL statement reads them all)
STAGING_THREADS = max(1, min(4, os.cpu_count() or 1))
# the staged parquet's schema (dlt does not read imported files); nullable as DuckDB writes them, so dlt's normalize
# imports the files as they are instead of rewriting them
COLUMNS = {
    **{column: {"data_type": "text"} for column in SHARE_PRICE_COLUMNS},
    "_source_file": {"data_type": "text", "nullable": True},
    "_source_row": {"data_type": "bigint"},
    "_loaded_at": {"data_type": "timestamp", "timezone": True},
}
# the table is exactly these columns with these types: a change (a new column, a `__v_text` variant, another type)
# fails the load instead of evolving the table. Values never reach dlt as rows (the parquet files are imported
# unread, every drop column VARCHAR), so what the values must parse as is the integrity check's job.
SCHEMA_CONTRACT = {"tables": "evolve", "columns": "freeze", "data_type": "freeze"}


@dataclass
class LoadLog:
    """What a run extracted: rows per loaded file and the files that failed their check (not loaded)."""

    rows: dict[str, int] = field(default_factory=dict)
    invalid: dict[str, InvalidDropFile] = field(default_factory=dict)


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _file_read(header: list[str]) -> str:
    """The `select` of one file's rows as staged: the share-price columns as VARCHAR plus its provenance, reading
    the file with the header's column names and sniffing off (parameters: file name, loaded_at, url)."""
    read = "{" + ", ".join(f"{_quoted(name)}: 'VARCHAR'" for name in header) + "}"
    columns = ", ".join(f'"{column}"' for column in SHARE_PRICE_COLUMNS)
    return f"""select {columns}, ?::varchar as _source_file, row_number() over () as _source_row,
            ?::timestamptz as _loaded_at
        from read_csv(?, header = true, delim = ',', quote = '"', escape = '"', auto_detect = false,
            columns = {read})"""


def _copy_to_parquet(con: duckdb.DuckDBPyConnection, query: str, parameters: list, folder: Path) -> Path:
    staged = folder / f"{uuid.uuid4().hex}.parquet"  # not a drop's name: it goes into SQL text
    con.execute(f"copy ({query}) to '{staged}' (format parquet, compression uncompressed)", parameters)
    return staged


def stage_share_price_file(
    con: duckdb.DuckDBPyConnection, drop: DropFile, loaded_at: datetime, folder: Path
) -> tuple[Path, int]:
    """Write one drop file's rows plus provenance to a parquet file in `folder` and check them; returns the parquet
    and its row count, raises InvalidDropFile.

    DuckDB gets the header's column names with sniffing off, so a row with another number of fields fails with its
    line number instead of being guessed around; `row_number() over ()` streams in file order.
    """
    check_name(drop.name)
    header = read_header(drop)
    check_header(drop.name, header)
    try:
        staged = _copy_to_parquet(con, _file_read(header), [drop.name, loaded_at, drop.url], folder)
    except duckdb.InvalidInputException as error:  # a malformed CSV: DuckDB says what, and on which line
        lines = str(error).strip().splitlines()
        line = re.search(r"Line: (\d+)", lines[0])
        row = int(line.group(1)) - 1 if line else None
        if "utf-8" in str(error).lower() and (found := find_non_utf8(read_bytes(drop))):
            row = row or found.line - 1
            column = header[found.field] if found.field is not None and found.field < len(header) else None
            problem = Problem(row, column, found.text, found.problem)
        else:
            reason = "; ".join(text for text in lines[:4] if text.startswith(("Invalid", "Expected", "Original")))
            problem = Problem(row, None, None, f"is not valid CSV: {reason}")
        raise InvalidDropFile(drop.name, 1 if row else 0, [problem]) from None
    except duckdb.IOException as error:  # deleted (or unreadable) since it was listed
        problem = Problem(None, None, None, f"could not be read: {str(error).splitlines()[0]}")
        raise InvalidDropFile(drop.name, 0, [problem]) from None
    return staged, check_share_prices(con, f"read_parquet('{staged}')", drop.name)


@dataclass
class StagedBatch:
    """A batch of drop files as staged: parquet files for dlt to import, each with the rows per file it holds,
    and the batch's files that failed their check (not in any parquet)."""

    imports: list[tuple[Path, dict[str, int]]] = field(default_factory=list)
    invalid: dict[str, InvalidDropFile] = field(default_factory=dict)


def _deleted_since_listed(drop: DropFile, location: str) -> InvalidDropFile:
    problem = Problem(None, None, None, f"is no longer in the drop location {location}")
    return InvalidDropFile(drop.name, 0, [problem])


def _stage_one_by_one(
    con: duckdb.DuckDBPyConnection,
    drops: list[DropFile],
    location: str,
    loaded_at: datetime,
    folder: Path,
    batch: StagedBatch,
) -> StagedBatch:
    for drop in drops:
        try:
            staged, rows = stage_share_price_file(con, drop, loaded_at, folder)
        except InvalidDropFile as invalid:
            batch.invalid[drop.name] = invalid
        except FileNotFoundError:
            batch.invalid[drop.name] = _deleted_since_listed(drop, location)
        else:
            batch.imports.append((staged, {drop.name: rows}))
    return batch


def stage_share_price_batch(
    con: duckdb.DuckDBPyConnection, drops: list[DropFile], location: str, loaded_at: datetime, folder: Path
) -> StagedBatch:
    """Stage several drop files of the drop `location` into one parquet file in `folder` and check them; a file that
    fails is recorded in the result and left out. `con` is used by this call alone (a cursor per thread)."""
    batch, readable = StagedBatch(), []
    for drop in drops:  # name and header first: cheap, and a file failing them is not read
        try:
            check_name(drop.name)
            header = read_header(drop)
            check_header(drop.name, header)
            readable.append((drop, header))
        except InvalidDropFile as invalid:
            batch.invalid[drop.name] = invalid
        except FileNotFoundError:
            batch.invalid[drop.name] = _deleted_since_listed(drop, location)
    if not readable:
        return batch
    query = " union all ".join(_file_read(header) for _, header in readable)
    parameters = [value for drop, _ in readable for value in (drop.name, loaded_at, drop.url)]
    try:
        staged = _copy_to_parquet(con, query, parameters, folder)
    except (duckdb.InvalidInputException, duckdb.IOException):  # which file, which line: staged alone, it says
        return _stage_one_by_one(con, [drop for drop, _ in readable], location, loaded_at, folder, batch)
    relation = f"read_parquet('{staged}')"
    passing = passing_files(con, relation)
    for drop, _ in readable:
        if drop.name in passing:
            continue
        try:  # it fails: checked alone, for the rows and columns at fault
            check_share_prices(con, f"(select * from {relation} where _source_file = {_quoted(drop.name)})", drop.name)
        except InvalidDropFile as invalid:
            batch.invalid[drop.name] = invalid
        else:  # cannot pass alone after failing in the batch; refuse it rather than load it unchecked
            raise RuntimeError(f"{drop.name}: the batched and the per-file integrity checks disagree")
    if batch.invalid and passing:  # rewrite the batch without the refused files
        kept = ", ".join(_quoted(name) for name in passing)
        rewritten = _copy_to_parquet(con, f"select * from {relation} where _source_file in ({kept})", [], folder)
        staged.unlink()
        staged = rewritten
    if passing:
        batch.imports.append((staged, {drop.name: passing[drop.name] for drop, _ in readable if drop.name in passing}))
    else:
        staged.unlink()
    return batch


def plan_batches(drops: list[DropFile], batch_bytes: int | None = None) -> list[list[DropFile]]:
    """Consecutive drop files, in order, grouped into batches of about `batch_bytes` (default `BATCH_BYTES`; a
    larger file alone)."""
    batch_bytes = batch_bytes or BATCH_BYTES
    batches: list[list[DropFile]] = []
    size = 0
    for drop in drops:
        if not batches or size + drop.size > batch_bytes or len(batches[-1]) >= BATCH_MAX_FILES:
            batches.append([])
            size = 0
        batches[-1].append(drop)
        size += drop.size
    return batches


def _files_in_destination(names: list[str]) -> set[str] | None:
    """Which of `names` have rows in the running pipeline's `share_prices` table; None when unknown (then merge)."""
    try:
        with dlt.current.pipeline().sql_client() as client:
            table = client.make_qualified_table_name("share_prices")
            if not client.has_dataset():
                return set()
            placeholders = ", ".join(["%s"] * len(names))
            query = f"select distinct _source_file from {table} where _source_file in ({placeholders})"
            return {name for (name,) in client.execute_sql(query, *names)}
    except DatabaseUndefinedRelation:
        return set()  # no table yet
    except Exception:  # no destination (the source iterated alone) or it is unreachable: the merge is always right
        return None


@dlt.source(name="share_price_files")
def share_price_files(
    drop_dir: str = str(DEMO_DROPS),
    files: Iterable[str] | None = None,
    log: LoadLog | None = None,
) -> Iterable:
    """The share-price drops in `drop_dir` (a folder or `s3://` URL); `files` limits the load to some file names.

    Without `log`, a file that fails its check (or is missing) raises; with it, the file is skipped and recorded in
    `log.invalid`, and the other files still load.
    """

    @dlt.resource(
        name="share_prices",
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
        merge_key="_source_file",
        columns=COLUMNS,
        schema_contract=SCHEMA_CONTRACT,
    )
    def share_prices() -> Iterator[Any]:  # parquet files for dlt to import, never rows
        drops = {drop.name: drop for drop in list_drops(str(drop_dir))}
        wanted = list(drops) if files is None else list(dict.fromkeys(files))
        loaded_at = datetime.now(UTC)
        found = [drops[name] for name in wanted if name in drops]
        for name in wanted:
            if name not in drops:
                problem = Problem(None, None, None, f"is not in the drop location {drop_dir}")
                invalid = InvalidDropFile(name, 0, [problem])
                if log is None:
                    raise invalid
                log.invalid[name] = invalid
        present = _files_in_destination([drop.name for drop in found]) if found else None
        append = present == set()  # no rows of these files yet: appending is the same as replacing
        with (
            tempfile.TemporaryDirectory(prefix="share_prices_") as folder,
            reader_connection(str(drop_dir), Path(folder) / "spill") as con,  # closed before the folder goes
            ThreadPoolExecutor(STAGING_THREADS, thread_name_prefix="stage_share_prices") as pool,
        ):
            cursors = [con.cursor() for _ in range(STAGING_THREADS)]  # one per staged batch in flight
            pending: deque[tuple[Future[StagedBatch], duckdb.DuckDBPyConnection]] = deque()
            batches = deque(plan_batches(found))

            def submit() -> None:
                while batches and cursors:
                    cursor = cursors.pop()
                    batch = batches.popleft()
                    future = pool.submit(stage_share_price_batch, cursor, batch, str(drop_dir), loaded_at, Path(folder))
                    pending.append((future, cursor))

            try:
                submit()
                while pending:
                    future, cursor = pending.popleft()
                    staged = future.result()  # in batch order, so files are reported in drop order
                    cursors.append(cursor)
                    submit()  # the next batch is staged while dlt takes this one
                    if staged.invalid and log is None:
                        raise next(iter(staged.invalid.values()))
                    if log is not None:
                        log.invalid.update(staged.invalid)
                    for parquet, rows in staged.imports:
                        hints = dlt.mark.make_hints(write_disposition="append") if append else None
                        append = False  # set once, on the first file
                        yield dlt.mark.with_file_import(str(parquet), "parquet", sum(rows.values()), hints=hints)
                        parquet.unlink()  # dlt has linked or copied it into its load package
                        if log is not None:
                            log.rows.update(rows)
            finally:  # an error or a closed generator: stop submitting, let the batches in flight finish
                batches.clear()
                for future, cursor in pending:
                    if not future.cancel():
                        future.exception()  # waits; what it raised no longer matters
                    cursor.close()
                for cursor in cursors:
                    cursor.close()

    return share_prices
