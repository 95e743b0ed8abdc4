"""Seed the demo shop database: schema `data` with customers, products and orders.

Deterministic: the same arguments give byte-identical tables (one `random.Random(seed)`, a fixed date window).
Idempotent: each call drops and recreates the schema.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import psycopg

ORDERS_START = datetime(2024, 1, 1)
ORDERS_END = datetime(2024, 7, 1)  # exclusive: orders span 2024-01-01 .. 2024-06-30

SCHEMA_DDL = """
drop schema if exists data cascade;
create schema data;
create table data.customers (
    customer_id serial primary key,
    first_name text not null,
    last_name text not null,
    email text not null unique
);
create table data.products (
    product_id serial primary key,
    name text not null,
    description text,
    price numeric(10, 2) not null
);
create table data.orders (
    order_id serial primary key,
    customer_id integer not null references data.customers (customer_id),
    product_id integer not null references data.products (product_id),
    quantity integer not null default 1,
    total_amount numeric(10, 2) not null,
    order_date timestamp not null
);
create index orders_order_date_idx on data.orders (order_date);
"""

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


def _customers(rng: random.Random, count: int) -> list[tuple[str, str, str]]:
    rows = []
    for number in range(1, count + 1):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        rows.append((first, last, f"{first}.{last}.{number}@example.com".lower()))  # the number keeps it unique
    return rows


def _products(rng: random.Random, count: int) -> list[tuple[str, str, Decimal]]:
    rows = []
    for number in range(count):
        noun, description, low, high = PRODUCTS[number % len(PRODUCTS)]
        adjective = ADJECTIVES[(number // len(PRODUCTS)) % len(ADJECTIVES)]
        price = (Decimal(rng.randint(low * 100, high * 100)) / 100 + Decimal("0.99")).quantize(CENT)
        rows.append((f"{adjective} {noun}", f"{adjective.lower()} {description}", price))
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
    order_rows = _orders(rng, orders, customers, [price for _, _, price in product_rows])
    with psycopg.connect(url) as conn, conn.cursor() as cur:  # one transaction: readers never see half a seed
        cur.execute(SCHEMA_DDL)
        with cur.copy("copy data.customers (first_name, last_name, email) from stdin") as copy:
            for row in customer_rows:
                copy.write_row(row)
        with cur.copy("copy data.products (name, description, price) from stdin") as copy:
            for row in product_rows:
                copy.write_row(row)
        with cur.copy(
            "copy data.orders (customer_id, product_id, quantity, total_amount, order_date) from stdin"
        ) as copy:
            for row in order_rows:
                copy.write_row(row)
        cur.execute("analyze data.customers; analyze data.products; analyze data.orders")
    return SeedCounts(customers=len(customer_rows), products=len(product_rows), orders=len(order_rows))
