"""The shop's dbt models on the demo data: the marts hold what the raw tables hold inside dev's data window, and
an incremental build of `fct_orders` after new and updated orders gives exactly the table a full refresh gives.
Expected values are computed in Python from the raw rows."""

from collections import defaultdict
from datetime import timedelta
from decimal import Decimal

import duckdb

from tests.support import copy_warehouse, query, run_dbt

DEV_WINDOW_DAYS = 90  # the default of var dev_window_days in dbt_project.yml
ALL_ROWS = "{ignore_date_limits: true}"


def test_the_marts_hold_the_orders_of_the_dev_window(demo_run):
    """Dev keeps the orders of the last 90 days up to the newest order day; customers and products whole."""
    warehouse = demo_run.warehouse
    orders = query(warehouse, "select order_id, customer_id, total_amount, order_date from raw_shop.orders")
    newest = max(ordered_at.date() for *_, ordered_at in orders)
    in_window = [order for order in orders if order[3].date() > newest - timedelta(days=DEV_WINDOW_DAYS)]
    assert 0 < len(in_window) < len(orders)
    window_days = {order[3].date() for order in in_window}
    lifetime = defaultdict(Decimal)
    for _, customer_id, total, _ in in_window:
        lifetime[customer_id] += total
    assert query(warehouse, "select count(*), sum(total_amount) from marts.fct_orders") == [
        (len(in_window), sum(order[2] for order in in_window))
    ]
    assert query(warehouse, "select count(*), sum(revenue) from marts.fct_revenue_daily") == [
        ((max(window_days) - min(window_days)).days + 1, sum(order[2] for order in in_window))
    ]
    customers = dict(query(warehouse, "select customer_id, lifetime_value from marts.dim_customers"))
    assert len(customers) == query(warehouse, "select count(*) from raw_shop.customers")[0][0]
    assert {customer: value for customer, value in customers.items() if value} == dict(lifetime)
    assert query(warehouse, "select count(*) from marts.dim_products") == query(
        warehouse, "select count(*) from raw_shop.products"
    )


def test_incremental_orders_match_a_full_refresh(demo_raw_warehouse, tmp_path):
    """After new and updated orders land in raw, an incremental build of fct_orders gives exactly the table a full
    refresh gives (all rows: the dev window is lifted)."""
    warehouse = copy_warehouse(demo_raw_warehouse, tmp_path)
    target = tmp_path / "target"
    run_dbt("run", "-s", "+fct_orders", "--vars", ALL_ROWS, warehouse=warehouse, target_path=target)

    with duckdb.connect(str(warehouse)) as con:  # what an incremental Sling load does: upsert, stamping the load
        updated = con.execute(
            "update raw_shop.orders set quantity = quantity + 1, total_amount = total_amount * 2,"
            " _sling_loaded_at = now() where order_id % 500 = 0 returning order_id"
        ).fetchall()
        added = con.execute(
            "insert into raw_shop.orders select * replace (order_id + 1000000 as order_id,"
            " order_date + interval 30 day as order_date, now() as _sling_loaded_at)"
            " from raw_shop.orders where order_id % 700 = 1 returning order_id"
        ).fetchall()
    assert updated and added
    run_dbt("run", "-s", "fct_orders", "--vars", ALL_ROWS, warehouse=warehouse, target_path=target)
    compiled = (target / "run" / "elt_platform" / "models" / "marts" / "shop" / "fct_orders.sql").read_text()
    assert "merge into" in compiled.lower()  # it was an incremental merge, not a rebuild

    columns = "order_id, customer_id, product_id, quantity, total_amount, ordered_at, order_date, loaded_at"
    incremental = query(warehouse, f"select {columns} from marts.fct_orders order by order_id")
    raw_orders = query(warehouse, "select order_id, quantity, total_amount from raw_shop.orders order by order_id")
    assert [row[:1] + row[3:5] for row in incremental] == raw_orders

    run_dbt("run", "-s", "fct_orders", "--full-refresh", "--vars", ALL_ROWS, warehouse=warehouse, target_path=target)
    assert query(warehouse, f"select {columns} from marts.fct_orders order by order_id") == incremental
