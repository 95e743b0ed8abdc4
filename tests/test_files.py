"""The CSV drops extractor against real files and a real DuckDB file."""

import shutil
from pathlib import Path

import dlt
import duckdb
import pytest

from extract.files.source import DEMO_DROPS, share_price_files


def _load(drop_dir: Path, warehouse: Path, **kwargs) -> None:
    pipeline = dlt.pipeline(
        "test_files",
        destination=dlt.destinations.duckdb(str(warehouse)),
        dataset_name="raw_files",
        pipelines_dir=str(warehouse.parent / "dlt"),
    )
    pipeline.run(share_price_files(drop_dir=str(drop_dir), **kwargs))


def _rows_per_file(warehouse: Path) -> dict[str, int]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return dict(con.sql("select _source_file, count(*) from raw_files.share_prices group by 1").fetchall())


def _data_lines(path: Path) -> int:
    return len(path.read_text().strip().splitlines()) - 1


@pytest.fixture
def drops(tmp_path: Path) -> Path:
    folder = tmp_path / "drops"
    shutil.copytree(DEMO_DROPS, folder)
    return folder


def test_loads_every_file_with_provenance_and_raw_strings(drops, tmp_path):
    warehouse = tmp_path / "w.duckdb"
    _load(drops, warehouse)
    assert _rows_per_file(warehouse) == {path.name: _data_lines(path) for path in drops.glob("*.csv")}
    with duckdb.connect(str(warehouse), read_only=True) as con:
        row = con.sql(
            "select date, share_price, _loaded_at is not null from raw_files.share_prices "
            "where _source_file = '2018-01-22.csv' and date = '2018/09/28'"
        ).fetchone()
    assert row == ("2018/09/28", "264.7700", True)


def test_reloading_a_changed_file_replaces_only_its_rows(drops, tmp_path):
    warehouse = tmp_path / "w.duckdb"
    _load(drops, warehouse)
    _load(drops, warehouse)  # a plain re-run: no duplicates
    before = _rows_per_file(warehouse)
    changed = drops / "2018-01-22.csv"
    lines = changed.read_text().strip().splitlines()
    changed.write_text("\n".join(lines[:3]) + "\n")  # the file was re-dropped with 2 rows
    _load(drops, warehouse, files=["2018-01-22.csv"])
    after = _rows_per_file(warehouse)
    assert after["2018-01-22.csv"] == 2
    assert after["2018-01-23.csv"] == before["2018-01-23.csv"]


def test_missing_column_names_the_file(drops, tmp_path):
    bad = drops / "2018-01-24.csv"
    bad.write_text('"date","amount"\n"2018/10/16","1.0"\n')
    with pytest.raises(Exception, match=r"2018-01-24\.csv: missing required column\(s\) share_price"):
        _load(drops, tmp_path / "w.duckdb")
