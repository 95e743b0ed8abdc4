"""The dbt project on a real raw warehouse: what the marts hold, the incremental model, the dev data window,
`state:modified`, docs, and how Dagster reports dbt tests (asset checks that block what is downstream of them).

The raw warehouse is loaded once per module by the real extractors (dlt for the CSV drops and the NeoWs replay,
Sling from the session's seeded PostgreSQL); every test works on its own copy. Expected values are computed in
Python from the raw rows.
"""

import json
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from orchestration.defs.dbt.assets import dbt_assets_for
from orchestration.lib.asset_keys import raw_table_asset_key
from orchestration.lib.dbt import WarehouseDbtCliResource, ensure_manifest
from orchestration.lib.environment import DBT_PROJECT_DIR, REPO_ROOT, resolve
from orchestration.lib.warehouse import WarehouseResource

dbt_models, _ = dbt_assets_for()

NASA_DAYS = (date(2018, 9, 5), date(2018, 9, 11))
DEV_WINDOW_DAYS = 90  # the default of var dev_window_days in dbt_project.yml
ALL_ROWS = "{ignore_date_limits: true}"


@pytest.fixture(scope="module")
def raw_warehouse(demo_raw_warehouse: Path) -> Path:
    """A DuckDB file with every raw table of every source (loaded by the extract assets); tests copy it."""
    return demo_raw_warehouse


def copy_warehouse(raw_warehouse: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(raw_warehouse, folder / "warehouse.duckdb"))


def dbt_env(warehouse: Path) -> dict[str, str]:
    """The variables profiles.yml reads, pointing the dev target at `warehouse`."""
    return {"ELT_ENV": "dev", "ELT_DEV_DATABASE": str(warehouse), "ELT_DATA_DIR": str(warehouse.parent)}


def run_dbt(*args: str, warehouse: Path, target_path: Path, env: dict[str, str] | None = None, check: bool = True):
    """dbt from the shell, as a user runs it, with its own target and log folders (the checkout's are shared)."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dbt"), *args, "--project-dir", str(DBT_PROJECT_DIR)]
        + ["--profiles-dir", str(REPO_ROOT), "--target-path", str(target_path)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, **dbt_env(warehouse), "DBT_LOG_PATH": str(target_path / "logs"), **(env or {})},
    )
    if check:
        assert result.returncode == 0, f"dbt {' '.join(args)} failed:\n{result.stdout[-5000:]}\n{result.stderr}"
    return result


def materialize_dbt(warehouse: Path) -> dg.ExecuteInProcessResult:
    """The dbt assets materialized by Dagster, as in `elt run`, on `warehouse` (dev target, default vars)."""
    env = resolve(dbt_env(warehouse))
    dbt = WarehouseDbtCliResource.for_environment(env)
    warehouse_resource = WarehouseResource.from_environment(env)
    return dg.materialize([dbt_models], resources={"dbt": dbt, "warehouse": warehouse_resource}, raise_on_error=False)


def query(warehouse: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql).fetchall()


def materialized_keys(result: dg.ExecuteInProcessResult) -> set[dg.AssetKey]:
    return {event.asset_key for event in result.get_asset_materialization_events()}


@pytest.fixture(scope="module")
def demo_build(raw_warehouse: Path, tmp_path_factory: pytest.TempPathFactory):
    """One Dagster materialization of every dbt asset on a copy of the raw warehouse."""
    warehouse = copy_warehouse(raw_warehouse, tmp_path_factory.mktemp("demo_build"))
    return materialize_dbt(warehouse), warehouse


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads(ensure_manifest().read_text())


def test_every_dbt_test_reports_as_a_passing_asset_check(demo_build, manifest):
    result, _ = demo_build
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    data_tests = {node["name"] for node in manifest["nodes"].values() if node["resource_type"] == "test"}
    assert {evaluation.check_name for evaluation in evaluations} == data_tests
    assert [evaluation.check_name for evaluation in evaluations if not evaluation.passed] == []
    assert result.get_asset_observation_events() == []  # no test fell back to an observation
    # tests on sources report on the extract assets' keys, which the translator maps the sources to
    source_checks = {(e.asset_key.to_user_string(), e.check_name) for e in evaluations}
    assert ("raw_shop/orders", "source_unique_shop_orders_order_id") in source_checks
    tested_sources = {
        raw_table_asset_key(source["schema"], source["identifier"]).to_user_string()
        for node in manifest["nodes"].values()
        if node["resource_type"] == "test"
        for unique_id in node["depends_on"]["nodes"]
        if (source := manifest["sources"].get(unique_id))
    }
    assert len(tested_sources) >= 4
    assert {key for key, _ in source_checks if key.startswith("raw_")} == tested_sources


def test_marts_hold_what_the_raw_tables_hold(demo_build, raw_warehouse):
    result, warehouse = demo_build
    assert result.success

    # shop: dev keeps the orders of the last 90 days up to the newest order day
    orders = query(raw_warehouse, "select order_id, customer_id, total_amount, order_date from raw_shop.orders")
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
    assert len(customers) == query(raw_warehouse, "select count(*) from raw_shop.customers")[0][0]
    assert {customer: value for customer, value in customers.items() if value} == dict(lifetime)
    assert query(warehouse, "select count(*) from marts.dim_products") == query(
        raw_warehouse, "select count(*) from raw_shop.products"
    )

    # share prices: one row per trading date; loaded in one run, the later drop file wins
    winners: dict[str, tuple[str, str]] = {}
    for trading_date, price, source_file in query(
        raw_warehouse, "select date, share_price, _source_file from raw_files.share_prices order by _source_file"
    ):
        winners[trading_date.replace("/", "-")] = (price, source_file)
    marts = query(warehouse, "select trading_date, share_price, source_file from marts.fct_share_prices_daily")
    assert {str(day): (f"{price:.4f}", file) for day, price, file in marts} == winners

    # asteroids: every close approach, every object, every feed day
    objects, hazardous = defaultdict(set), defaultdict(set)
    for neo_id, feed_day, is_hazardous in query(
        raw_warehouse,
        "select neo_reference_id, close_approach_date, is_potentially_hazardous_asteroid from raw_nasa.asteroids",
    ):
        objects[feed_day].add(neo_id)
        if is_hazardous:
            hazardous[feed_day].add(neo_id)
    assert query(warehouse, "select count(*) from marts.fct_close_approaches") == query(
        raw_warehouse, "select count(*) from raw_nasa.asteroids__close_approach_data"
    )
    assert query(warehouse, "select count(*) from marts.dim_asteroids")[0][0] == len(set().union(*objects.values()))
    daily = query(warehouse, "select approach_date, objects, hazardous_objects from marts.fct_close_approaches_daily")
    assert {day: (count, risky) for day, count, risky in daily} == {
        day: (len(ids), len(hazardous[day])) for day, ids in objects.items()
    }


def test_docs_generate_and_every_model_and_column_is_described(demo_build, tmp_path):
    _, warehouse = demo_build
    run_dbt("docs", "generate", warehouse=warehouse, target_path=tmp_path)
    catalog = json.loads((tmp_path / "catalog.json").read_text())
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    models = {uid: node for uid, node in manifest["nodes"].items() if node["resource_type"] == "model"}
    assert set(models) <= set(catalog["nodes"]), "every model is in the warehouse catalog"
    undescribed = [uid for uid, node in models.items() if not node["description"].strip()]
    for uid, node in models.items():
        described = {name.lower() for name, column in node["columns"].items() if column["description"].strip()}
        undescribed += [f"{uid}.{name}" for name in catalog["nodes"][uid]["columns"] if name.lower() not in described]
    assert undescribed == []


def test_failing_tests_block_the_assets_downstream_of_them(raw_warehouse, tmp_path):
    """A duplicate order in raw fails a source test, a negative price a staging test: what lies downstream of
    each is not built; everything else is."""
    warehouse = copy_warehouse(raw_warehouse, tmp_path)
    with duckdb.connect(str(warehouse)) as con:
        con.execute("insert into raw_shop.orders select * from raw_shop.orders order by order_id desc limit 1")
        con.execute("update raw_files.share_prices set share_price = '-1.0000' where _source_row = 1")
    result = materialize_dbt(warehouse)

    evaluations = result.get_asset_check_evaluations()
    failed = {(e.asset_key.to_user_string(), e.check_name) for e in evaluations if not e.passed}
    assert failed == {
        ("raw_shop/orders", "source_unique_shop_orders_order_id"),
        ("staging/stg_files__share_prices", "positive_value_stg_files__share_prices_share_price"),
    }
    children = defaultdict(set)
    for key, parents in dbt_models.asset_deps.items():
        for parent in parents:
            children[parent].add(key)
    blocked: set[dg.AssetKey] = set()
    frontier = [dg.AssetKey(["raw_shop", "orders"]), dg.AssetKey(["staging", "stg_files__share_prices"])]
    while frontier:
        below = children[frontier.pop()] - blocked
        blocked |= below
        frontier += below
    assert dg.AssetKey(["marts", "dim_customers"]) in blocked
    assert materialized_keys(result) == set(dbt_models.keys) - blocked


def test_incremental_orders_match_a_full_refresh(raw_warehouse, tmp_path):
    """After new and updated orders land in raw, an incremental build of fct_orders gives exactly the table a full
    refresh gives (all rows: the dev window is lifted)."""
    warehouse = copy_warehouse(raw_warehouse, tmp_path)
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


def test_dev_window_does_not_make_state_modified_see_changes(raw_warehouse, tmp_path):
    """The window depends on the target only inside the SQL body, so a dev manifest compared with prod's shows no
    modified node; a bad window setting is named in the error."""
    warehouse = copy_warehouse(raw_warehouse, tmp_path)
    prod = {"ELT_ENV": "prod", "ELT_PROD_DATABASE": str(tmp_path / "prod.duckdb")}
    run_dbt("parse", warehouse=warehouse, target_path=tmp_path / "prod_state", env=prod)
    listed = run_dbt(
        "ls", "-q", "-s", "state:modified", "--state", str(tmp_path / "prod_state"),
        warehouse=warehouse, target_path=tmp_path / "dev",
    )  # fmt: skip
    assert listed.stdout.strip() == ""

    bad = run_dbt(
        "compile", "-s", "stg_shop__orders", "--vars", "{dev_window_days: ninety}",
        warehouse=warehouse, target_path=tmp_path / "dev", check=False,
    )  # fmt: skip
    assert bad.returncode != 0
    assert "var dev_window_days must be a whole number of days >= 1, got ninety" in bad.stdout
