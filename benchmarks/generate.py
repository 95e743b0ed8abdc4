"""Deterministic benchmark data at a scale factor: share-price CSV drops, a PostgreSQL shop, NeoWs replay days.

Every value is a function of (seed, file/row/order number), computed by the database that writes it (DuckDB
`COPY ... TO` for the CSVs, `generate_series` SQL inside PostgreSQL), so 10M rows take seconds to minutes, not
Python loops, and the same scale and seed give the same bytes.

The shop's schema and the NeoWs object shapes come from the demo sources themselves (`extract/shop/seed.py`,
`extract/nasa/recorded/generate.py`), imported by the functions that write them, so this module loads with any
demo source deleted; the stages that need a deleted source are skipped (benchmarks/harness.py).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import psycopg

FIRST_DROP = date(2018, 1, 1)  # drop files are named by day from here: 2018-01-01.csv, 2018-01-02.csv ...
LAST_TRADING_DATE = date(2018, 9, 28)  # row i of a file is this date minus i days: unique per file, like the sample
FEED_START = date(2018, 9, 5)  # the NASA slice's default window: 7 feed days from here
FEED_DAYS = 7
PRODUCTS = 40


def quiet_connect(database: str | Path = ":memory:", read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection that draws no progress bar (it would fill the benchmark's log on long queries)."""
    con = duckdb.connect(str(database), read_only=read_only)
    con.execute("set enable_progress_bar = false")
    return con


@dataclass(frozen=True)
class Scale:
    """How much data: `files` CSVs of `rows_per_file`, `customers` and `orders` in PostgreSQL, `neos_per_day`."""

    name: str
    files: int
    rows_per_file: int
    customers: int
    orders: int
    neos_per_day: int
    seed: int = 42

    @property
    def csv_rows(self) -> int:
        return self.files * self.rows_per_file

    @property
    def shop_rows(self) -> int:
        return self.customers + PRODUCTS + self.orders

    @property
    def neo_rows(self) -> int:
        return FEED_DAYS * self.neos_per_day

    @property
    def increment(self) -> int:
        """The orders added for the incremental stage: 1% (at least one)."""
        return max(1, self.orders // 100)


SCALES = {
    scale.name: scale
    for scale in (
        Scale("tiny", files=3, rows_per_file=200, customers=100, orders=1_000, neos_per_day=5),
        Scale("demo", files=2, rows_per_file=10, customers=500, orders=6_000, neos_per_day=12),
        Scale("small", files=20, rows_per_file=5_000, customers=10_000, orders=100_000, neos_per_day=50),
        Scale("1m", files=50, rows_per_file=20_000, customers=50_000, orders=1_000_000, neos_per_day=200),
        Scale("5m", files=100, rows_per_file=50_000, customers=200_000, orders=2_000_000, neos_per_day=500),
        Scale("10m", files=100, rows_per_file=100_000, customers=1_000_000, orders=10_000_000, neos_per_day=1_000),
    )
}


def _price(seed: int, file_number: int, column: str) -> str:
    """A DuckDB expression: a positive 4-decimal number, a deterministic function of (seed, file, row i, column)."""
    return f"printf('%.4f', 1 + hash({seed}, {file_number}, i, '{column}') % 5000000 / 10000.0)"


def write_share_price_files(drop_dir: Path, scale: Scale) -> list[Path]:
    """`files` drops in the sample format: quoted header and values, `2018/09/28` dates, 4-decimal numbers."""
    drop_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    with quiet_connect() as con:
        for number in range(scale.files):
            path = drop_dir / f"{FIRST_DROP + timedelta(days=number)}.csv"
            con.execute(
                f"""
                copy (
                    select
                        strftime(date '{LAST_TRADING_DATE}' - i::integer, '%Y/%m/%d') as "date",
                        {_price(scale.seed, number, "share_price")} as share_price,
                        printf('%.4f', (hash({scale.seed}, {number}, i, 'amount') % 50000000)::double) as amount,
                        {_price(scale.seed, number, "spend")} as spend,
                        {_price(scale.seed, number, "shift")} as "shift",
                        {_price(scale.seed, number, "spread")} as spread
                    from range({scale.rows_per_file}) as t(i)
                    order by i
                ) to '{path}' (header, force_quote *)
                """
            )
            paths.append(path)
    return paths


def _order_rows_sql(first: int, count: int, start: str, step_seconds: float, scale: Scale) -> str:
    """SELECT of `count` orders numbered from `first`, dated from `start` every `step_seconds`, in id order; an order
    was last updated when it was placed (`updated_at` = `order_date`, as in the seed)."""
    return f"""
        select
            o.customer_id, o.product_id, o.quantity, products.price * o.quantity, o.order_date, o.order_date
        from (
            select
                g,
                1 + abs(hashint8extended(g, {scale.seed} + 1)) % {scale.customers} as customer_id,
                1 + abs(hashint8extended(g, {scale.seed} + 2)) % {PRODUCTS} as product_id,
                1 + abs(hashint8extended(g, {scale.seed} + 3)) % 3 as quantity,
                timestamp '{start}' + make_interval(secs => (g - {first}) * {step_seconds}) as order_date
            from generate_series({first}::bigint, {first + count - 1}::bigint) as g
        ) as o
        join data.products as products on products.product_id = o.product_id
        order by o.g
    """


def fill_shop(url: str, scale: Scale) -> None:
    """Recreate schema `data` (the seed's DDL) with `customers` customers, 40 products and `orders` orders.

    Foreign keys and the order_date index are dropped for the bulk insert and rebuilt after: checking 10M rows
    one trigger at a time takes longer than validating them in one pass. Rows carry distinct `updated_at` stamps as
    in the seed, and the seed's `updated_at` / deletion triggers are created after the insert.
    """
    from extract.shop.seed import (
        FIRST_NAMES,
        LAST_NAMES,
        ORDERS_END,
        ORDERS_START,
        SCHEMA_DDL,
        SIGNUPS_START,
        TRIGGER_DDL,
    )

    window = (ORDERS_END - ORDERS_START).total_seconds()
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute("set synchronous_commit = off")
        cur.execute(SCHEMA_DDL)
        cur.execute(
            """
            alter table data.orders drop constraint orders_customer_id_fkey, drop constraint orders_product_id_fkey;
            drop index data.orders_order_date_idx;
            """
        )
        cur.execute(
            """
            insert into data.customers (first_name, last_name, email, updated_at)
            select
                (%(first)s::text[])[1 + abs(hashint8extended(g, %(seed)s)) %% cardinality(%(first)s::text[])],
                (%(last)s::text[])[1 + abs(hashint8extended(g, %(seed)s + 9)) %% cardinality(%(last)s::text[])],
                'customer.' || g || '@example.com',
                %(signups)s::timestamp + make_interval(secs => g)
            from generate_series(1, %(customers)s) as g
            order by g
            """,
            {
                "first": list(FIRST_NAMES),
                "last": list(LAST_NAMES),
                "seed": scale.seed,
                "customers": scale.customers,
                "signups": SIGNUPS_START,
            },
        )
        cur.execute(
            f"""
            insert into data.products (name, description, price, updated_at)
            select
                'Product ' || g,
                'generated product ' || g,
                (199 + abs(hashint8extended(g, {scale.seed})) % 20000) / 100.0,
                timestamp '{SIGNUPS_START}' + make_interval(secs => g)
            from generate_series(1, {PRODUCTS}) as g
            order by g
            """
        )
        cur.execute(
            "insert into data.orders (customer_id, product_id, quantity, total_amount, order_date, updated_at)"
            + _order_rows_sql(1, scale.orders, str(ORDERS_START), window / scale.orders, scale)
        )
        cur.execute(
            """
            alter table data.orders
                add constraint orders_customer_id_fkey foreign key (customer_id) references data.customers,
                add constraint orders_product_id_fkey foreign key (product_id) references data.products;
            create index orders_order_date_idx on data.orders (order_date);
            """
        )
        cur.execute(TRIGGER_DDL)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("vacuum analyze data.customers, data.products, data.orders")


def increment_start() -> datetime:
    """Where the +1% orders start: after every existing order, as new orders in a live shop come."""
    from extract.shop.seed import ORDERS_END

    return ORDERS_END


def add_order_increment(url: str, scale: Scale) -> int:
    """Append 1% new orders, dated after every existing one; returns how many."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "insert into data.orders (customer_id, product_id, quantity, total_amount, order_date, updated_at)"
            + _order_rows_sql(scale.orders + 1, scale.increment, str(increment_start()), 1.0, scale)
        )
    return scale.increment


def remove_order_increment(url: str) -> None:
    """Back to the base shop: drop the increment and rewind the id sequence, so every repeat sees the same ids."""
    with psycopg.connect(url) as conn:
        conn.execute("delete from data.orders where order_date >= %s", (increment_start(),))
        conn.execute("delete from data.deletions")  # the tombstones the delete left: the base shop has none
        conn.execute("select setval('data.orders_order_id_seq', (select max(order_id) from data.orders))")


def write_neows_days(recorded_dir: Path, scale: Scale) -> list[Path]:
    """7 feed days of `neos_per_day` objects each, in the shape of extract/nasa/recorded (served by its replay)."""
    from extract.nasa.recorded.generate import close_approach, new_object

    recorded_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(scale.seed)
    paths = []
    for offset in range(FEED_DAYS):
        day = FEED_START + timedelta(days=offset)
        objects = []
        for number in range(scale.neos_per_day):
            neo = new_object(rng)
            reference_id = str(3_000_000 + offset * scale.neos_per_day + number)  # unique per feed day
            neo.update(neo_reference_id=reference_id, close_approach_data=[close_approach(rng, day)])
            neo["links"] = {"self": f"http://127.0.0.1/neo/rest/v1/neo/{reference_id}"}
            objects.append(neo)
        path = recorded_dir / f"feed_{day}.generated.json"
        path.write_text(json.dumps({"element_count": len(objects), "near_earth_objects": {str(day): objects}}))
        paths.append(path)
    return paths


@dataclass(frozen=True)
class Dataset:
    """Where the generated data is: the drop folder, the NeoWs recorded folder (PostgreSQL is filled in place)."""

    drop_dir: Path
    recorded_dir: Path


def _generate_once(folder: Path, scale: Scale, write: Callable[[Path, Scale], object]) -> None:
    """`write` the folder's files at this scale, unless a marker beside it says the same scale wrote them."""
    marker = folder.with_name(f"{folder.name}.scale.json")
    wanted = json.dumps(asdict(scale), sort_keys=True)
    if marker.is_file() and marker.read_text() == wanted:
        return
    marker.unlink(missing_ok=True)
    for stale in folder.glob("*") if folder.is_dir() else ():
        stale.unlink()
    write(folder, scale)
    marker.write_text(wanted)


def generate_files(data_dir: Path, scale: Scale, drops: bool = True, neows: bool = True) -> Dataset:
    """The CSV drops and the NeoWs days under `data_dir`, each only when asked for (the NeoWs days need the nasa
    source's generator); each is reused when a marker says the same scale wrote it."""
    dataset = Dataset(drop_dir=data_dir / "drops", recorded_dir=data_dir / "neows")
    if drops:
        _generate_once(dataset.drop_dir, scale, write_share_price_files)
    if neows:
        _generate_once(dataset.recorded_dir, scale, write_neows_days)
    return dataset
