"""Share-price CSV drops -> dlt. One file per drop (`YYYY-MM-DD.csv`); reading is columnar, in DuckDB.

Raw values are kept as the file wrote them (VARCHAR: `2018/09/28`, `264.7700`); staging in dbt casts them. Each
row carries its provenance (`_source_file`, `_source_row`, `_loaded_at`). DuckDB streams each file into a parquet file
(`COPY ... TO`, with the header's columns and sniffing off), the integrity check (extract/files/integrity.py) scans
that parquet, and dlt imports it as is: no rows pass through Python, and one file at a time is in flight.

Loading is delete-insert on `_source_file`: dlt's merge deletes and inserts in one transaction (with dlt's
`supports_transactions` on, as orchestration/lib/warehouse.py sets it), so re-loading a file replaces exactly its
rows, atomically, and leaves other files' rows alone. When none of the run's files has rows in the destination yet
(the usual case: new drops), the load appends instead: the same result without dlt's staging copy.
"""

from __future__ import annotations

import re
import tempfile
import uuid
from collections.abc import Iterable, Iterator
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
)

DEMO_DROPS = Path(__file__).parent / "demo_drops"
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
    read = "{" + ", ".join(f"'{name.replace(chr(39), chr(39) * 2)}': 'VARCHAR'" for name in header) + "}"
    columns = ", ".join(f'"{column}"' for column in SHARE_PRICE_COLUMNS)
    staged = folder / f"{uuid.uuid4().hex}.parquet"  # not the drop's name: it goes into SQL text
    try:
        con.execute(
            f"""copy (
                select {columns}, ?::varchar as _source_file, row_number() over () as _source_row,
                    ?::timestamptz as _loaded_at
                from read_csv(?, header = true, delim = ',', quote = '"', escape = '"', auto_detect = false,
                    columns = {read})
            ) to '{staged}' (format parquet, compression uncompressed)""",
            [drop.name, loaded_at, drop.url],
        )
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
        found = [name for name in wanted if name in drops]
        present = _files_in_destination(found) if found else None
        append = present == set()  # no rows of these files yet: appending is the same as replacing
        with (
            tempfile.TemporaryDirectory(prefix="share_prices_") as folder,
            reader_connection(str(drop_dir), Path(folder) / "spill") as con,  # closed before the folder goes
        ):
            for name in wanted:
                try:
                    if name not in drops:
                        problem = Problem(None, None, None, f"is not in the drop location {drop_dir}")
                        raise InvalidDropFile(name, 0, [problem])
                    try:
                        staged, rows = stage_share_price_file(con, drops[name], loaded_at, Path(folder))
                    except FileNotFoundError:  # deleted since it was listed
                        problem = Problem(None, None, None, f"is no longer in the drop location {drop_dir}")
                        raise InvalidDropFile(name, 0, [problem]) from None
                except InvalidDropFile as invalid:
                    if log is None:
                        raise
                    log.invalid[name] = invalid
                    continue
                hints = dlt.mark.make_hints(write_disposition="append") if append else None
                append = False  # set once, on the first file
                yield dlt.mark.with_file_import(str(staged), "parquet", rows, hints=hints)
                staged.unlink()  # dlt has linked or copied it into its load package
                if log is not None:
                    log.rows[name] = rows

    return share_prices
