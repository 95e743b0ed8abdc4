"""Share-price CSV drops -> dlt. One file per drop (`YYYY-MM-DD.csv`); reading is columnar (DuckDB -> Arrow).

Raw values are kept as the file wrote them (VARCHAR: `2018/09/28`, `264.7700`); staging in dbt casts them. Each
row carries its provenance (`_source_file`, `_source_row`, `_loaded_at`). Loading is delete-insert on
`_source_file`: re-loading a file replaces exactly the rows that came from it, in one transaction, and leaves
other files' rows alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import dlt
import duckdb
import pyarrow as pa

DEMO_DROPS = Path(__file__).parent / "demo_drops"
SHARE_PRICE_COLUMNS = ("date", "share_price", "amount", "spend", "shift", "spread")


def list_drop_files(drop_dir: str | Path) -> list[Path]:
    """The CSV drops in a folder, oldest drop first (the file name is the drop date)."""
    folder = Path(drop_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"share-price drop folder {folder} does not exist")
    return sorted(folder.glob("*.csv"))


def read_share_price_file(path: Path, loaded_at: datetime) -> pa.Table:
    """One drop file as an Arrow table of strings, plus provenance columns."""
    with duckdb.connect() as con:
        table = con.read_csv(str(path), header=True, all_varchar=True).arrow()
    if hasattr(table, "read_all"):  # DuckDB returns a RecordBatchReader from .arrow() in newer versions
        table = table.read_all()
    missing = [column for column in SHARE_PRICE_COLUMNS if column not in table.column_names]
    if missing:
        raise ValueError(f"{path}: missing required column(s) {', '.join(missing)} in the header")
    table = table.select(list(SHARE_PRICE_COLUMNS))
    rows = table.num_rows
    provenance = {
        "_source_file": pa.array([path.name] * rows, pa.string()),
        "_source_row": pa.array(range(1, rows + 1), pa.int64()),  # 1 = the first data row after the header
        "_loaded_at": pa.array([loaded_at] * rows, pa.timestamp("us", tz="UTC")),
    }
    for name, values in provenance.items():
        table = table.append_column(pa.field(name, values.type, nullable=False), values)
    return table


@dlt.source(name="share_price_files")
def share_price_files(drop_dir: str = str(DEMO_DROPS), files: Iterable[str] | None = None) -> Iterable:
    """The share-price drops in `drop_dir`; `files` limits the load to some file names."""

    @dlt.resource(
        name="share_prices",
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
        merge_key="_source_file",
    )
    def share_prices() -> Iterator[pa.Table]:
        wanted = set(files) if files is not None else None
        loaded_at = datetime.now(UTC)
        for path in list_drop_files(drop_dir):
            if wanted is None or path.name in wanted:
                yield read_share_price_file(path, loaded_at)

    return share_prices
