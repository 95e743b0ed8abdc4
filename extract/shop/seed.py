"""Seed the demo shop database: schema `data` with customers, products and orders.

Deterministic: the same arguments give byte-identical tables (one `random.Random(seed)`, a fixed date window).
Idempotent: each call drops and recreates the schema.

Like a real OLTP schema, every table has an `updated_at` that a trigger moves to the time of each update (UTC), and
a delete leaves a tombstone in `data.deletions` (table, id, time): Sling replicates every table incrementally on
those columns, so an edit that keeps `order_date` and a deleted row both reach the warehouse (docs/shop.md). The
seed stamps its rows itself (customers signed up, products listed before the first order; an order was last
updated when it was placed), so re-seeding gives the same `updated_at` values.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import psycopg

ORDERS_START = datetime(2024, 1, 1)
ORDERS_END = datetime(2024, 7, 1)  # exclusive: orders span 2024-01-01 .. 2024-06-30
SIGNUPS_START = datetime(2023, 1, 1)  # customers signed up and products were listed during 2023

SCHEMA_DDL = """
drop schema if exists data cascade;
create schema data;
create table data.customers (
    customer_id serial primary key,
    first_name text not null,
    last_name text not null,
    email text not null unique,
    updated_at timestamp not null default (now() at time zone 'UTC')
);
create table data.products (
    product_id serial primary key,
    name text not null,
    description text,
    price numeric(10, 2) not null,
    updated_at timestamp not null default (now() at time zone 'UTC')
);
create table data.orders (
    order_id serial primary key,
    customer_id integer not null references data.customers (customer_id),
    product_id integer not null references data.products (product_id),
    quantity integer not null default 1,
    total_amount numeric(10, 2) not null,
    order_date timestamp not null,
    updated_at timestamp not null default (now() at time zone 'UTC')
);
create index orders_order_date_idx on data.orders (order_date);
-- one tombstone per deleted row: the replication's deletion flag (docs/shop.md); `row_id` is the primary key
create table data.deletions (
    table_name text not null,
    row_id integer not null,
    deleted_at timestamp not null default (now() at time zone 'UTC'),
    primary key (table_name, row_id)
);
-- every update moves updated_at to now (UTC), whatever the statement set: the replication's incremental cursor
create function data.touch_updated_at() returns trigger language plpgsql as $$
begin
    new.updated_at := now() at time zone 'UTC';
    return new;
end $$;
-- a deleted row leaves (table, primary key value, time); the key column is the trigger's argument
create function data.record_deletion() returns trigger language plpgsql as $$
begin
    insert into data.deletions (table_name, row_id)
    values (tg_table_name, (to_jsonb(old) ->> tg_argv[0])::integer)
    on conflict (table_name, row_id) do update set deleted_at = excluded.deleted_at;
    return old;
end $$;
"""
TRACKED_TABLES = {"customers": "customer_id", "products": "product_id", "orders": "order_id"}
TRIGGER_DDL = "".join(
    f"""
create index {table}_updated_at_idx on data.{table} (updated_at);
create trigger {table}_touch_updated_at before update on data.{table}
    for each row execute function data.touch_updated_at();
create trigger {table}_record_deletion after delete on data.{table}
    for each row execute function data.record_deletion('{key}');
"""
    for table, key in TRACKED_TABLES.items()
)

FIRST_NAMES = (
    "Ada Alan Amara Ana Aarav Bea Ben Carla Chen Dana Diego Elena Emil Fatima Felix Grace Hana Hugo "
    "Ines Ivan Jade Jonas Kai Kemal Lara Leo Maya Mateo Nia Noah Olga Omar Priya Quinn Rosa Sami Sofia "
    "Tariq Uma Yara"
).split()
LAST_NAMES = (
    "Adams Becker Costa Dubois Eriksen Fischer Garcia Hansen Ito Jensen Kowalski Lopez Moreau Nakamura "
    "Novak Okafor Petrov Quispe Rossi Schmidt Silva Tanaka Usman Varga Weber Xu Yilmaz Zhang"
).split()
ADJECTIVES = "Classic Compact Deluxe Eco Ergonomic Everyday Handmade Lightweight Premium Rugged Smart Vintage".split()
PRODUCTS = (
    ("Backpack", "a water-resistant backpack with a padded laptop sleeve", 35, 140),
    ("Coffee Grinder", "a burr grinder with 18 settings", 25, 180),
    ("Desk Lamp", "an LED lamp with adjustable colour temperature", 15, 90),
    ("Headphones", "over-ear headphones with noise cancelling", 40, 350),
    ("Kettle", "a 1.7 l kettle with temperature control", 20, 120),
    ("Notebook", "a dotted A5 notebook, 192 pages", 4, 30),
    ("Running Shoes", "cushioned shoes for road running", 50, 200),
    ("Water Bottle", "an insulated steel bottle, 750 ml", 8, 45),
    ("Yoga Mat", "a non-slip mat, 6 mm thick", 15, 90),
    ("Wireless Mouse", "a quiet mouse with a rechargeable battery", 12, 80),
)
QUANTITY_WEIGHTS = ((1, 60), (2, 25), (3, 10), (4, 3), (5, 2))
CENT = Decimal("0.01")


@dataclass(frozen=True)
class SeedCounts:
    customers: int
    products: int
    orders: int


def _signup_times(count: int) -> list[datetime]:
    """`count` distinct ascending times, evenly spread over the year before the first order: when each customer or
    product row was made (no draw from the seed's random stream, so names, prices and orders stay as they were)."""
    step = timedelta(seconds=int((ORDERS_START - SIGNUPS_START).total_seconds()) // max(count, 1))  # whole seconds
    return [SIGNUPS_START + step * number for number in range(count)]


def _customers(rng: random.Random, count: int) -> list[tuple[str, str, str, datetime]]:
    rows = []
    for number, signed_up in zip(range(1, count + 1), _signup_times(count), strict=True):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        # the number keeps the email unique
        rows.append((first, last, f"{first}.{last}.{number}@example.com".lower(), signed_up))
    return rows


def _products(rng: random.Random, count: int) -> list[tuple[str, str, Decimal, datetime]]:
    rows = []
    for number, listed in zip(range(count), _signup_times(count), strict=True):
        noun, description, low, high = PRODUCTS[number % len(PRODUCTS)]
        adjective = ADJECTIVES[(number // len(PRODUCTS)) % len(ADJECTIVES)]
        price = (Decimal(rng.randint(low * 100, high * 100)) / 100 + Decimal("0.99")).quantize(CENT)
        rows.append((f"{adjective} {noun}", f"{adjective.lower()} {description}", price, listed))
    return rows


def _orders(
    rng: random.Random, count: int, customers: int, prices: list[Decimal]
) -> list[tuple[int, int, int, Decimal, datetime]]:
    window_seconds = int((ORDERS_END - ORDERS_START).total_seconds())
    dates = sorted(ORDERS_START + timedelta(seconds=rng.randrange(window_seconds)) for _ in range(count))
    quantities, weights = zip(*QUANTITY_WEIGHTS, strict=True)
    rows = []
    for order_date in dates:  # order ids grow with order_date, as in a live shop
        customer_id = rng.randint(1, customers)
        product_id = rng.randint(1, len(prices))
        quantity = rng.choices(quantities, weights)[0]
        rows.append(
            (
                customer_id,
                product_id,
                quantity,
                (prices[product_id - 1] * quantity).quantize(CENT),
                order_date,
            )
        )
    return rows


def seed_shop(url: str, customers: int = 500, products: int = 40, orders: int = 6000, seed: int = 42) -> SeedCounts:
    """Replace schema `data` in the database at `url` with freshly generated, deterministic shop data."""
    rng = random.Random(seed)
    customer_rows = _customers(rng, customers)
    product_rows = _products(rng, products)
    order_rows = _orders(rng, orders, customers, [price for _, _, price, _ in product_rows])
    with psycopg.connect(url) as conn, conn.cursor() as cur:  # one transaction: readers never see half a seed
        cur.execute(SCHEMA_DDL)
        with cur.copy("copy data.customers (first_name, last_name, email, updated_at) from stdin") as copy:
            for row in customer_rows:
                copy.write_row(row)
        with cur.copy("copy data.products (name, description, price, updated_at) from stdin") as copy:
            for row in product_rows:
                copy.write_row(row)
        with cur.copy(  # an order was last updated when it was placed
            "copy data.orders (customer_id, product_id, quantity, total_amount, order_date, updated_at) from stdin"
        ) as copy:
            for row in order_rows:
                copy.write_row((*row, row[-1]))
        cur.execute(TRIGGER_DDL)  # after the copies: the bulk load neither fires nor maintains them row by row
        cur.execute("analyze data.customers; analyze data.products; analyze data.orders")
    return SeedCounts(customers=len(customer_rows), products=len(product_rows), orders=len(order_rows))
