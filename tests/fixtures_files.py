"""Fixtures for the CSV drops source, and the row counts a demo run lands, derived from the bundled drops."""

import csv

import duckdb

from extract.files.source import DEMO_DROPS


def demo_share_price_rows() -> list[dict[str, str]]:
    return [row for path in sorted(DEMO_DROPS.glob("*.csv")) for row in csv.DictReader(path.open())]


def demo_row_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """What one `elt run` on the demo drops lands, per raw table and mart."""
    rows = demo_share_price_rows()
    return {"raw_files.share_prices": len(rows), "marts.fct_share_prices_daily": len({row["date"] for row in rows})}
