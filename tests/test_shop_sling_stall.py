"""The Sling stall guard (extract/shop/stall.py): a real Sling frozen mid-run (SIGSTOP: 0 % CPU, as the hang seen
with Sling 1.4.11) is stopped after the window with an error that says so, and the raw tables keep their content;
a process that works is left alone."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import psutil
import psycopg
import pytest

from extract.shop.replicate import ShopReplicationError, replicate_shop
from extract.shop.stall import STALL_SETTING, stall_guard, stall_seconds


def _child(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code])


def test_an_idle_process_tree_is_killed_after_the_window_and_a_busy_one_is_not():
    idle = _child("import time; time.sleep(120)")
    busy = _child("import time\nend = time.monotonic() + 4\nwhile time.monotonic() < end: pass")
    try:
        with stall_guard(idle_seconds=2, poll_seconds=0.25, match=lambda p: p.pid == busy.pid) as guard:
            assert busy.wait(timeout=30) == 0  # 4 s of work: more than the 2 s window, never idle
        assert guard.stalled is None
        started = time.monotonic()
        with stall_guard(idle_seconds=2, poll_seconds=0.25, match=lambda p: p.pid == idle.pid) as guard:
            assert idle.wait(timeout=30) == -signal.SIGKILL
        assert 2 <= time.monotonic() - started < 10
        assert "made no progress for 2 s" in guard.stalled and f"pid {idle.pid}" in guard.stalled
    finally:
        for process in (idle, busy):
            process.kill()


def test_the_window_setting_is_checked(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(STALL_SETTING, "soon")
    with pytest.raises(ValueError, match=f"{STALL_SETTING}='soon' is not a number"):
        stall_seconds()
    monkeypatch.setenv(STALL_SETTING, "0")
    with pytest.raises(ValueError, match="must be more than 0"):
        stall_seconds()
    monkeypatch.setenv(STALL_SETTING, "42")
    assert stall_seconds() == 42


def _freeze_sling_when_it_starts(stop: threading.Event, frozen: list[int], every: bool = False) -> None:
    """SIGSTOP the first Sling this process starts (with `every`, each one) as soon as it appears."""
    me = psutil.Process()
    while not stop.is_set():
        for process in me.children(recursive=True):
            try:
                if process.name().startswith("sling") and process.pid not in frozen:
                    process.send_signal(signal.SIGSTOP)
                    frozen.append(process.pid)
                    if not every:
                        return
            except psutil.Error:
                pass
        time.sleep(0.05)


def _content(warehouse: Path) -> dict[str, tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {
            table: con.sql(f"select count(*), sum(hash(columns(*))) from raw_shop.{table}").fetchone()
            for table in ("customers", "products", "orders")
        }


def test_a_sling_frozen_twice_fails_the_replication_naming_the_stall_and_keeps_the_raw_tables(
    own_shop_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    warehouse = tmp_path / "warehouse.duckdb"
    replicate_shop(own_shop_url, warehouse)  # first load (bulk snapshot)
    before = _content(warehouse)
    with psycopg.connect(own_shop_url, autocommit=True) as conn:
        conn.execute("update data.orders set quantity = quantity + 1 where order_id = 1")

    monkeypatch.setenv(STALL_SETTING, "3")
    stop, frozen = threading.Event(), []
    freezer = threading.Thread(target=_freeze_sling_when_it_starts, args=(stop, frozen, True), daemon=True)
    freezer.start()
    try:
        with pytest.raises(ShopReplicationError, match=r"Sling made no progress for 3 s .* \(twice in a row\)"):
            replicate_shop(own_shop_url, warehouse)  # incremental: Sling runs, is frozen, runs again, is frozen
    finally:
        stop.set()
        freezer.join()
    assert len(frozen) == 2, f"Sling was not run once more after the first stall: {frozen}"
    for pid in frozen:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert _content(warehouse) == before

    monkeypatch.delenv(STALL_SETTING)
    replicate_shop(own_shop_url, warehouse)  # the next run goes through and brings the change
    with duckdb.connect(str(warehouse), read_only=True) as con:
        (quantity,) = con.sql("select quantity from raw_shop.orders where order_id = 1").fetchone()
    with psycopg.connect(own_shop_url) as conn:
        assert conn.execute("select quantity from data.orders where order_id = 1").fetchone()[0] == quantity
    assert os.environ.get(STALL_SETTING) is None


def test_a_sling_frozen_once_is_run_once_more_and_the_replication_succeeds(
    own_shop_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    warehouse = tmp_path / "warehouse.duckdb"
    replicate_shop(own_shop_url, warehouse)  # first load (bulk snapshot)
    with psycopg.connect(own_shop_url, autocommit=True) as conn:
        conn.execute("update data.orders set quantity = quantity + 1 where order_id = 2")
        (quantity,) = conn.execute("select quantity from data.orders where order_id = 2").fetchone()
    monkeypatch.setenv(STALL_SETTING, "15")  # as below: the unfrozen Sling never idles that long
    stop, frozen = threading.Event(), []
    freezer = threading.Thread(target=_freeze_sling_when_it_starts, args=(stop, frozen), daemon=True)
    freezer.start()
    try:
        replicate_shop(own_shop_url, warehouse)
    finally:
        stop.set()
        freezer.join()
    assert len(frozen) == 1
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.sql("select quantity from raw_shop.orders where order_id = 2").fetchone() == (quantity,)


def test_in_dagster_a_frozen_sling_is_run_once_more_and_the_step_succeeds(
    own_shop_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import dagster as dg

    from orchestration.defs.shop.assets import shop_assets
    from orchestration.defs.shop.resources import ShopPostgresResource
    from orchestration.lib.warehouse import WarehouseResource

    warehouse = tmp_path / "w.duckdb"
    resources = {
        "shop_postgres": ShopPostgresResource(url=own_shop_url),
        "warehouse": WarehouseResource(env_name="dev", location=str(warehouse), data_dir=str(tmp_path)),
    }
    dg.materialize([shop_assets], resources=resources)  # first load: the bulk snapshot, no Sling
    with psycopg.connect(own_shop_url, autocommit=True) as conn:
        conn.execute("update data.orders set quantity = quantity + 1 where order_id = 1")
        (quantity,) = conn.execute("select quantity from data.orders where order_id = 1").fetchone()

    # wide enough that the second, unfrozen Sling never idles that long on a busy machine (it did at 3 s)
    monkeypatch.setenv(STALL_SETTING, "15")
    stop, frozen = threading.Event(), []
    freezer = threading.Thread(target=_freeze_sling_when_it_starts, args=(stop, frozen), daemon=True)
    freezer.start()
    try:
        with dg.instance_for_test() as instance:
            result = dg.materialize([shop_assets], resources=resources, instance=instance)
            log = "\n".join(entry.user_message for entry in instance.all_logs(result.run_id))
    finally:
        stop.set()
        freezer.join()
    assert frozen and result.success  # the freezer stops only the first Sling; the second attempt loads
    assert "Sling made no progress for 15 s" in log and "running Sling once more" in log
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.sql("select quantity from raw_shop.orders where order_id = 1").fetchone()[0] == quantity
        assert con.sql("select count(*) - count(distinct order_id) from raw_shop.orders").fetchone()[0] == 0
