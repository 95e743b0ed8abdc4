"""Write-Audit-Publish in prod (orchestration/lib/publish.py): real DuckDB files, real dbt, real Dagster runs.

One prod warehouse is built and published once per module (from the session's raw demo warehouse); each test
works on a copy of it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from orchestration.branch.clones import motherduck_create_sql
from orchestration.defs.dbt.assets import dbt_assets_for
from orchestration.lib import publish
from orchestration.lib.dbt import WarehouseDbtCliResource
from orchestration.lib.environment import REPO_ROOT, resolve
from orchestration.lib.warehouse import WarehouseResource

READER_SCHEMAS = ("staging", "intermediate", "marts")
dbt_models, dbt_publish = dbt_assets_for()


def prod_settings(warehouse: Path) -> dict[str, str]:
    return {"ELT_ENV": "prod", "ELT_PROD_DATABASE": str(warehouse), "ELT_DATA_DIR": str(warehouse.parent / "data")}


# the models a run builds: all but the shop order marts (the incremental fct_orders and what reads it), so that a
# run is also a subset, as the automation launches them: the models left out keep their published slots
SELECTION = (
    dg.AssetSelection.assets(*dbt_models.keys) - dg.AssetSelection.assets(["marts", "fct_orders"]).downstream()
) | dg.AssetSelection.assets(dbt_publish)


def run_prod(warehouse: Path) -> dg.ExecuteInProcessResult:
    """The dbt build + audit and the publish step, as a prod run materializes them."""
    env = resolve(prod_settings(warehouse))
    resources = {
        "dbt": WarehouseDbtCliResource.for_environment(env),
        "warehouse": WarehouseResource.from_environment(env),
    }
    return dg.materialize([dbt_models, dbt_publish], resources=resources, selection=SELECTION, raise_on_error=False)


def failures(result: dg.ExecuteInProcessResult) -> list[str]:
    return [
        str(
            event.step_failure_data.user_failure_data.description
            if event.step_failure_data.user_failure_data
            else event.step_failure_data.error
        )
        for event in result.all_events
        if event.event_type_value == "STEP_FAILURE"
    ]


def published_content(warehouse: Path) -> dict[str, tuple[int, int]]:
    """Row count and an order-independent hash of every reader-facing table and view."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        relations = con.execute(
            "select table_schema, table_name from information_schema.tables where table_schema in "
            f"{READER_SCHEMAS} order by 1, 2"
        ).fetchall()
        return {
            f"{schema}.{name}": con.execute(
                f'select count(*), coalesce(sum(hash(t)::hugeint), 0) from "{schema}"."{name}" as t'
            ).fetchone()
            for schema, name in relations
        }


def marts(content: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    """The published tables; staging and intermediate are views over raw, live by nature."""
    return {name: value for name, value in content.items() if name.startswith("marts.")}


def copy_of(warehouse: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(warehouse, folder / "prod.duckdb"))


def add_rows(warehouse: Path) -> None:
    """New data for two marts: a share price for a new trading date, and one close approach fewer."""
    with duckdb.connect(str(warehouse)) as con:
        con.execute(
            "insert into raw_files.share_prices select * replace ('2030/01/02' as date, 999999 as _source_row) "
            "from raw_files.share_prices order by _source_row limit 1"
        )
        con.execute(
            "delete from raw_nasa.asteroids__close_approach_data where _dlt_id = "
            "(select min(_dlt_id) from raw_nasa.asteroids__close_approach_data)"
        )


CHANGED = {"marts.fct_share_prices_daily": 1, "marts.fct_close_approaches": -1}  # rows added by add_rows


@pytest.fixture(scope="module")
def prod(demo_raw_warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prod warehouse after one passing run: everything built in slot a and published."""
    warehouse = copy_of(demo_raw_warehouse, tmp_path_factory.mktemp("wap_prod"))
    result = run_prod(warehouse)
    assert result.success, failures(result)
    return warehouse


@pytest.fixture(scope="module")
def two_publishes(prod: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`prod` after a second passing run with one new order: publish 2 in slot b, publish 1 kept in slot a."""
    warehouse = copy_of(prod, tmp_path_factory.mktemp("wap_two"))
    add_rows(warehouse)
    result = run_prod(warehouse)
    assert result.success, failures(result)
    return warehouse


def test_a_passing_run_publishes_views_onto_the_audited_slot(prod):
    content = published_content(prod)
    assert content["marts.fct_share_prices_daily"][0] > 0 and content["marts.fct_close_approaches"][0] > 0
    with duckdb.connect(str(prod), read_only=True) as con:
        kinds = dict(
            con.execute(
                "select table_name, table_type from information_schema.tables where table_schema = 'marts'"
            ).fetchall()
        )
        assert set(kinds.values()) == {"VIEW"}, kinds
        assert (
            con.execute("select count(*) from marts__slot_a.dim_asteroids").fetchone()[0]
            == content["marts.dim_asteroids"][0]
        )
        published = con.execute("select publish_id, kind from elt_meta.wap_publishes").fetchall()
        assert published == [(1, "publish")]
        assert con.execute("select count(*) from elt_meta.wap_audit").fetchone()[0] == 0
        # the manifest PR branches compare against names the published slots
        manifest = con.execute("select manifest from elt_meta.dbt_prod_manifest").fetchone()[0]
        assert '"schema": "marts__slot_a"' in manifest


def test_a_failing_test_publishes_nothing_and_names_the_test_and_model(prod, tmp_path):
    warehouse = copy_of(prod, tmp_path)
    before = published_content(warehouse)
    with duckdb.connect(str(warehouse)) as con:
        con.execute("insert into raw_shop.orders select * from raw_shop.orders order by order_id desc limit 1")
        con.execute("update raw_files.share_prices set share_price = '-1.0000' where _source_row = 1")
    result = run_prod(warehouse)

    assert not result.success
    failure = next(event for event in result.all_events if event.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.user_failure_data.description
    assert "test source_unique_shop_orders_order_id on orders" in message
    assert "test positive_value_stg_files__share_prices_share_price on stg_files__share_prices" in message
    publish_step = [e for e in result.all_events if e.step_key and "dbt_publish" in e.step_key]
    assert not any(e.event_type_value == "STEP_SUCCESS" for e in publish_step)  # the failed audit blocks it
    checks = {e.check_name for e in result.get_asset_check_evaluations() if not e.passed}
    assert "positive_value_stg_files__share_prices_share_price" in checks

    # views over raw are live by nature; every published table keeps its content
    after = published_content(warehouse)
    assert marts(after) == marts(before)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        # the audited relations stay queryable for diagnosis
        bad = "select count(*) from staging__slot_b.stg_files__share_prices where share_price < 0"
        assert con.execute(bad).fetchone()[0] > 0
        assert con.execute("select count(*) from marts__slot_b.fct_close_approaches").fetchone()[0] > 0
        assert con.execute("select count(*) from elt_meta.wap_audit").fetchone()[0] == 0
        assert con.execute("select count(*) from elt_meta.wap_publishes").fetchone()[0] == 1


def test_a_second_run_publishes_and_rollback_restores_the_previous_content(prod, two_publishes, tmp_path):
    warehouse = copy_of(two_publishes, tmp_path)
    first, second = published_content(prod), published_content(warehouse)
    assert {name: second[name][0] - first[name][0] for name in CHANGED} == CHANGED

    rolled = subprocess.run(
        [str(Path(sys.executable).parent / "elt"), "prod", "rollback"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, **prod_settings(warehouse)},
        timeout=120,
    )
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert "rolled back publish 2" in rolled.stdout
    assert marts(published_content(warehouse)) == marts(first)
    with duckdb.connect(str(warehouse)) as con:
        manifest = con.execute("select manifest from elt_meta.dbt_prod_manifest").fetchone()[0]
        assert '"schema": "marts__slot_a"' in manifest  # prod's manifest is publish 1's again
        publish.rollback(con)  # a second rollback undoes the first
    assert marts(published_content(warehouse)) == marts(second)


def test_rollback_without_a_previous_publish_refuses(prod, tmp_path):
    warehouse = copy_of(prod, tmp_path)
    before = published_content(warehouse)
    with duckdb.connect(str(warehouse)) as con, pytest.raises(publish.PublishError, match="publish 1 was their first"):
        publish.rollback(con)
    assert published_content(warehouse) == before


def test_a_reader_never_sees_a_mixed_state_while_publishing(prod, two_publishes, tmp_path):
    """A reader loop on its own connection reads two marts in one query while publish and rollback swap every view
    back and forth: each answer is all publish 1 or all publish 2."""
    warehouse = copy_of(two_publishes, tmp_path)
    query = (
        "select (select count(*) from marts.fct_share_prices_daily), (select count(*) from marts.fct_close_approaches)"
    )
    with duckdb.connect(str(warehouse)) as con:
        second = con.execute(query).fetchone()
        publish.rollback(con)
        first = con.execute(query).fetchone()
        assert first != second
        seen, stop = [], threading.Event()

        def read() -> None:
            reader = duckdb.connect(str(warehouse))  # the same database instance, its own connection
            while not stop.is_set():
                seen.append(reader.execute(query).fetchone())
            reader.close()

        thread = threading.Thread(target=read)
        thread.start()
        for _ in range(20):
            publish.rollback(con)
        stop.set()
        thread.join(timeout=30)
    assert len(seen) > 20
    assert set(seen) <= {first, second}, set(seen) - {first, second}
    assert set(seen) == {first, second}


KILL_AFTER_AUDIT = """
import os, signal, sys
import dagster as dg
from orchestration.defs.dbt.assets import dbt_assets_for
from orchestration.lib.dbt import WarehouseDbtCliResource
from orchestration.lib.environment import resolve
from orchestration.lib.warehouse import WarehouseResource
env = resolve()
from tests.test_wap import SELECTION
dbt_models, dbt_publish = dbt_assets_for()
result = dg.materialize([dbt_models, dbt_publish], resources={"dbt": WarehouseDbtCliResource.for_environment(env),
                        "warehouse": WarehouseResource.from_environment(env)},
                        selection=SELECTION - dg.AssetSelection.assets(dbt_publish), raise_on_error=False)
assert result.success
os.kill(os.getpid(), signal.SIGKILL)  # audited, never published
"""


@pytest.mark.slow
def test_sigkill_between_audit_and_publish_leaves_prod_and_the_next_run_publishes(prod, tmp_path):
    warehouse = copy_of(prod, tmp_path)
    add_rows(warehouse)
    before = published_content(warehouse)
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_AUDIT],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, **prod_settings(warehouse)},
        timeout=600,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert published_content(warehouse) == before
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("select count(*) from elt_meta.wap_audit").fetchone()[0] > 0  # audited, waiting
        audited = con.execute("select count(*) from marts__slot_b.fct_share_prices_daily").fetchone()[0]
        assert audited == before["marts.fct_share_prices_daily"][0] + 1

    result = run_prod(warehouse)
    assert result.success
    after = published_content(warehouse)
    assert {name: after[name][0] - before[name][0] for name in CHANGED} == CHANGED
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("select max(publish_id) from elt_meta.wap_publishes").fetchone()[0] == 2


def test_dev_builds_in_place_and_publishes_nothing(demo_raw_warehouse, tmp_path):
    """WAP is off in dev (and branch): the models are tables and views in their own schemas, no slots."""
    warehouse = copy_of(demo_raw_warehouse, tmp_path)
    env = resolve({"ELT_ENV": "dev", "ELT_DEV_DATABASE": str(warehouse), "ELT_DATA_DIR": str(tmp_path / "data")})
    resources = {
        "dbt": WarehouseDbtCliResource.for_environment(env),
        "warehouse": WarehouseResource.from_environment(env),
    }
    result = dg.materialize(
        [dbt_models, dbt_publish],
        resources=resources,
        selection=dg.AssetSelection.assets(["marts", "fct_share_prices_daily"]).upstream()
        & dg.AssetSelection.assets(*dbt_models.keys),
        raise_on_error=False,
    )
    assert result.success
    with duckdb.connect(str(warehouse), read_only=True) as con:
        schemas = {row[0] for row in con.execute("select schema_name from information_schema.schemata").fetchall()}
        kind = con.execute(
            "select table_type from information_schema.tables "
            "where table_schema = 'marts' and table_name = 'fct_share_prices_daily'"
        ).fetchone()
    assert kind == ("BASE TABLE",)
    assert not any("__slot_" in schema for schema in schemas) and "elt_meta" not in schemas


# MotherDuck: no network here, so the SQL it would run is checked, and run on a local file to prove it works


def _model(name: str, schema: str = "marts") -> publish.Model:
    return publish.Model(name, schema, name)


def test_motherduck_publish_rollback_and_clone_sql():
    orders, customers = _model("fct_orders"), _model("dim_customers")
    published = {
        "fct_orders": publish.Published(orders, "a", None),
        "dim_customers": publish.Published(customers, "b", "a"),
    }
    audited = [publish.Audited(orders, "b"), publish.Audited(customers, "c")]
    statements = publish.publish_sql(audited, published, {("marts", "fct_orders"): "VIEW"}, 3, "run-1")
    assert statements[0] == "begin transaction" and statements[-1] == "commit"
    views = [s for s in statements if s.startswith("create or replace view")]
    assert views == [
        'create or replace view "marts"."dim_customers" as select * from "marts__slot_c"."dim_customers"',
        'create or replace view "marts"."fct_orders" as select * from "marts__slot_b"."fct_orders"',
    ]
    body = " ".join(statements)
    # zero-copy: no table is created from data, no database copied; no catalog named (a clone resolves in itself)
    assert (
        "copy" not in body
        and "md:" not in body
        and " as select * from" not in body.replace(views[0], "").replace(views[1], "")
    )
    assert "'dim_customers', 'marts', 'dim_customers', 'c', 'b'" in body  # slots move: audit -> current -> previous

    rollback = publish.rollback_sql(["dim_customers"], published, 4, 3)
    assert rollback[0] == "begin transaction" and rollback[-1] == "commit"
    assert 'create or replace view "marts"."dim_customers" as select * from "marts__slot_a"."dim_customers"' in rollback
    with pytest.raises(publish.PublishError, match="fct_orders"):
        publish.rollback_sql(["fct_orders"], published, 4, 3)
    with pytest.raises(publish.PublishError, match="audited slot a"):
        publish.publish_sql([publish.Audited(orders, "a")], published, {}, 3, "run-1")

    assert motherduck_create_sql("analytics", "analytics_clone_7") == (
        'create or replace database "analytics_clone_7" from "analytics"'
    )

    # the same statements on a local DuckDB: they run, in one transaction
    with duckdb.connect() as con:
        publish.ensure_state(con)
        for slot in ("a", "b", "c"):
            con.execute(f"create schema marts__slot_{slot}")
            for name in ("fct_orders", "dim_customers"):
                con.execute(f"create table marts__slot_{slot}.{name} as select '{slot}' as slot")
        con.execute("create schema marts")
        con.execute("create view marts.fct_orders as select * from marts__slot_a.fct_orders")
        con.execute("create table marts.dim_customers as select 0 as slot")  # a table from before WAP: replaced
        for statement in publish.publish_sql(audited, published, {("marts", "dim_customers"): "BASE TABLE"}, 3, "r"):
            con.execute(statement)
        assert con.execute(
            "select (select slot from marts.fct_orders), (select slot from marts.dim_customers)"
        ).fetchone() == ("b", "c")
