"""PR branches on local files, end to end through the `elt branch` commands the GitHub workflow runs: build prod once,
clone it, change a model in the PR's copy of the project, build only what changed, drop. Prod is compared by content
(rows and a hash of every table). Guard tests, the sweep (CLI, Dagster job and schedule) and the MotherDuck SQL."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from orchestration.branch.clones import (
    MARKER_TABLE,
    META_SCHEMA,
    Clone,
    LocalClones,
    MotherDuckClones,
    copy_session,
    motherduck_create_sql,
    motherduck_database,
    motherduck_drop_sql,
    sweep_decisions,
)
from orchestration.defs.branch.jobs import SWEEP_JOB, branch_sweep
from orchestration.defs.branch.schedules import schedules
from orchestration.lib.dbt import run_dbt
from orchestration.lib.environment import DBT_PROJECT_DIR, EnvironmentConfigError, resolve
from orchestration.lib.warehouse import WarehouseResource

ELT = str(Path(sys.executable).parent / "elt")
CHANGED_MODEL = "fct_share_prices_daily"
NEW_MODEL = "branch_probe"
SLIM_FLAG = "state_modified_compare_more_unrendered_values: true"


def elt(*args: str, settings: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ELT_", "DAGSTER_CLOUD_"))}
    return subprocess.run([ELT, *args], capture_output=True, text=True, env={**clean, **settings})


def table_hashes(location: Path | str) -> dict[str, tuple[int, str]]:
    """Rows and an md5 over every row (sorted by its text) of every table: content, not timestamps."""
    with duckdb.connect(str(location), read_only=True) as con:
        tables = con.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_type = 'BASE TABLE' and table_catalog = current_database() order by 1, 2"
        ).fetchall()
        return {
            f"{schema}.{table}": con.execute(
                f"select count(*), md5(coalesce(string_agg(row::varchar, '|' order by row::varchar), '')) "
                f'from "{schema}"."{table}" as row'
            ).fetchone()
            for schema, table in tables
        }


def copy_project(target: Path) -> Path:
    """The dbt project as of now (other work changes it concurrently), with the flag slim CI needs across targets."""
    shutil.copytree(DBT_PROJECT_DIR, target, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    project_yml = target / "dbt_project.yml"
    text = project_yml.read_text()
    if SLIM_FLAG not in text:
        project_yml.write_text(text.replace("flags:\n", f"flags:\n  {SLIM_FLAG}\n", 1))
    assert SLIM_FLAG in project_yml.read_text()
    return target


@pytest.fixture(scope="module")
def prod(tmp_path_factory, demo_raw_warehouse) -> dict:
    """A prod warehouse file built by dbt (`--target prod`), with its manifest published by `elt branch`."""
    root = tmp_path_factory.mktemp("branch")
    warehouse = root / "prod" / "prod.duckdb"
    warehouse.parent.mkdir()
    shutil.copy(demo_raw_warehouse, warehouse)  # every raw table of every source
    project = copy_project(root / "project")
    settings = {"ELT_DATA_DIR": str(root / "data"), "ELT_PROD_DATABASE": str(warehouse)}
    prod_env = resolve({**settings, "ELT_ENV": "prod"})
    # `run`, not `build`: the project's own tests are another engineer's concern, and a failing one would skip marts
    built = run_dbt(prod_env, ["run"], project, root / "prod_target")
    assert built.ok, built.failed
    manifest = str(root / "prod_target" / "manifest.json")
    published = elt("branch", "publish-state", "--manifest", manifest, settings={**settings, "ELT_ENV": "prod"})
    assert published.returncode == 0, published.stdout + published.stderr
    return {"root": root, "warehouse": warehouse, "project": project, "settings": settings}


def change_project(project: Path, target: Path) -> Path:
    """The PR: a comment in one mart (its code changed) and a new model over that mart."""
    pr = Path(shutil.copytree(project, target))
    changed = next(pr.glob(f"models/**/{CHANGED_MODEL}.sql"))
    changed.write_text(changed.read_text() + "\n-- changed in the pull request\n")
    (pr / "models" / "marts" / f"{NEW_MODEL}.sql").write_text(
        f"select count(*) as days, sum(share_price) as price_total from {{{{ ref('{CHANGED_MODEL}') }}}}\n"
    )
    return pr


def descendants(manifest: dict, unique_id: str) -> set[str]:
    found, todo = set(), [unique_id]
    while todo:
        for child in manifest["child_map"].get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def test_full_cycle_on_local_files(prod):
    settings, root = prod["settings"], prod["root"]
    before = table_hashes(prod["warehouse"])
    assert f"{META_SCHEMA}.dbt_prod_manifest" in before

    created = elt("branch", "create", "7", "--project-dir", str(prod["project"]), settings=settings)
    assert created.returncode == 0, created.stdout + created.stderr
    clone = Path(settings["ELT_DATA_DIR"]) / "warehouse" / "branches" / "7.duckdb"
    cloned = table_hashes(clone)
    assert {name: value for name, value in cloned.items() if not name.endswith(MARKER_TABLE)} == before
    with duckdb.connect(str(clone), read_only=True) as con:  # views read the clone, not a database named prod
        views = con.execute("select schema_name, view_name from duckdb_views() where not internal").fetchall()
        assert views
        for schema, view in views:
            con.execute(f'select count(*) from "{schema}"."{view}"').fetchone()

    pr = change_project(prod["project"], root / "pr_project")
    built = elt("branch", "build", "7", "--project-dir", str(pr), settings=settings)
    assert built.returncode == 0, built.stdout + built.stderr
    assert "state:modified+" in built.stdout

    # slim: exactly the changed mart, the new model and what is downstream of them ran
    manifest = json.loads((root / "prod_target" / "manifest.json").read_text())
    changed_id = next(uid for uid, node in manifest["nodes"].items() if node["name"] == CHANGED_MODEL)
    expected = {changed_id, f"model.elt_platform.{NEW_MODEL}"} | {
        uid for uid in descendants(manifest, changed_id) if uid.startswith("model.")
    }
    results = json.loads((root / "data" / "branches" / "7" / "target" / "run_results.json").read_text())["results"]
    assert {r["unique_id"] for r in results if r["unique_id"].startswith("model.")} == expected
    assert all(r["status"] in ("success", "pass") for r in results)

    # the branch sees prod's data plus the change
    with duckdb.connect(str(clone), read_only=True) as con:
        probe = con.execute(f"select days, price_total from marts.{NEW_MODEL}").fetchone()
    with duckdb.connect(str(prod["warehouse"]), read_only=True) as con:
        from_prod = con.execute(f"select count(*), sum(share_price) from marts.{CHANGED_MODEL}").fetchone()
    assert probe == from_prod
    after_build = table_hashes(clone)
    untouched = {name for name in before if not name.endswith((CHANGED_MODEL, NEW_MODEL))}
    assert {name: after_build[name] for name in untouched} == {name: before[name] for name in untouched}

    dropped = elt("branch", "drop", "7", settings=settings)
    assert dropped.returncode == 0, dropped.stdout + dropped.stderr
    assert not clone.exists()
    assert table_hashes(prod["warehouse"]) == before, "prod must not change by content"


@pytest.fixture
def small_prod(tmp_path) -> dict:
    """A one-table prod file: enough for the guard and sweep tests, which run no dbt."""
    warehouse = tmp_path / "prod.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create schema marts; create table marts.t as select range as id from range(10)")
    return {
        "warehouse": warehouse,
        "settings": {"ELT_DATA_DIR": str(tmp_path / "data"), "ELT_PROD_DATABASE": str(warehouse)},
    }


def test_branch_commands_refuse_when_the_clone_would_be_prod(tmp_path):
    data = tmp_path / "data"
    prod = data / "warehouse" / "branches" / "9.duckdb"  # prod placed where branch 9's clone would live
    prod.parent.mkdir(parents=True)
    with duckdb.connect(str(prod)) as con:
        con.execute("create table t as select 1 as id")
    before = table_hashes(prod)
    settings = {"ELT_DATA_DIR": str(data), "ELT_PROD_DATABASE": str(prod)}
    for command in (["create", "9"], ["build", "9"], ["drop", "9"]):
        result = elt("branch", *command, settings=settings)
        assert result.returncode != 0
        assert "refusing to write the prod warehouse" in result.stderr, result.stderr
    assert table_hashes(prod) == before


def test_dev_process_refuses_prod(small_prod):
    settings = {**small_prod["settings"], "ELT_DEV_DATABASE": str(small_prod["warehouse"])}
    result = elt("env", settings=settings)
    assert result.returncode != 0
    assert "refusing to write the prod warehouse" in result.stderr and "ELT_DEV_DATABASE" in result.stderr


def test_branch_definitions_write_only_the_clone(small_prod):
    env = resolve({**small_prod["settings"], "ELT_ENV": "branch", "ELT_BRANCH_ID": "12"})
    resource = WarehouseResource.from_environment(env)
    assert resource.checked_location() == str(
        Path(small_prod["settings"]["ELT_DATA_DIR"]) / "warehouse/branches/12.duckdb"
    )
    assert env.env_for_subprocess()["ELT_ENV"] == "branch"


def test_drop_refuses_non_clones_and_bad_names(small_prod):
    settings = small_prod["settings"]
    stranger = Path(settings["ELT_DATA_DIR"]) / "warehouse" / "branches" / "5.duckdb"
    stranger.parent.mkdir(parents=True)
    with duckdb.connect(str(stranger)) as con:
        con.execute("create table t as select 1 as id")
    result = elt("branch", "drop", "5", settings=settings)
    assert result.returncode != 0 and "is not the clone of branch '5'" in result.stderr
    assert stranger.exists()
    for bad in ("../../prod", "prod.duckdb"):
        result = elt("branch", "drop", bad, settings=settings)
        assert result.returncode != 0 and "ELT_BRANCH_ID" in result.stderr, result.stderr
    assert small_prod["warehouse"].exists()
    assert elt("branch", "drop", "6", settings=settings).returncode == 0  # no clone: nothing to do


def _age(clone: Path, days: int) -> None:
    with duckdb.connect(str(clone)) as con:
        con.execute(f"update {META_SCHEMA}.{MARKER_TABLE} set created_at = created_at - interval '{days} days'")


def test_sweep_drops_closed_and_old_clones_only(small_prod):
    settings = small_prod["settings"]
    store = LocalClones(small_prod["warehouse"], Path(settings["ELT_DATA_DIR"]))
    for branch_id in ("1", "2", "3"):
        store.create(branch_id)
    _age(store.location("3"), 10)
    stranger = store.folder / "4.duckdb"
    with duckdb.connect(str(stranger)) as con:
        con.execute("create table t as select 1 as id")
    before = table_hashes(small_prod["warehouse"])

    result = elt("branch", "sweep", "--open-prs", "1 3", "--max-age-days", "7", settings=settings)
    assert result.returncode == 0, result.stderr
    assert sorted(path.stem for path in store.folder.glob("*.duckdb")) == ["1", "4"]
    assert "2 of 4 clones dropped" in result.stdout
    assert table_hashes(small_prod["warehouse"]) == before


def test_daily_sweep_schedule_runs_the_sweep_job_in_dagster(small_prod, monkeypatch):
    settings = {**small_prod["settings"], "ELT_ENV": "prod"}
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    env = resolve()
    store = LocalClones(small_prod["warehouse"], env.data_dir)
    store.create("20")
    store.create("21")
    _age(store.location("21"), 30)
    defs = dg.Definitions.merge(
        schedules(),
        dg.Definitions(jobs=[branch_sweep], resources={"warehouse": WarehouseResource.from_environment(env)}),
    )
    schedule = defs.resolve_schedule_def("branch_sweep_daily")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING  # prod
    with dg.instance_for_test() as instance:
        request = schedule.evaluate_tick(dg.build_schedule_context(instance=instance)).run_requests[0]
        result = defs.resolve_job_def(SWEEP_JOB).execute_in_process(run_config=request.run_config, instance=instance)
    assert result.success
    assert [path.stem for path in store.folder.glob("*.duckdb")] == ["20"]
    assert table_hashes(small_prod["warehouse"])["marts.t"][0] == 10


def test_sweep_decisions_follow_open_prs_and_age():
    now = datetime(2026, 11, 21, tzinfo=UTC)
    clones = [
        Clone("open-new", "a", now - timedelta(days=1)),
        Clone("closed", "b", now - timedelta(days=1)),
        Clone("open-old", "c", now - timedelta(days=8)),
        Clone("stranger", "d", None),
    ]
    by_age = {d.clone.branch_id: d.drop for d in sweep_decisions(clones, None, timedelta(days=7), now)}
    assert by_age == {"open-new": False, "closed": False, "open-old": True, "stranger": False}
    # MotherDuck spells '-' as '_': an open PR listed either way keeps its clone
    with_prs = sweep_decisions(clones, {"open_new", "open-old"}, timedelta(days=7), now)
    assert {d.clone.branch_id: d.drop for d in with_prs} == {
        "open-new": False,
        "closed": True,
        "open-old": True,
        "stranger": False,
    }


def test_motherduck_sql_and_connection_strings():
    env = resolve({"ELT_ENV": "branch", "ELT_BRANCH_ID": "pr-7", "ELT_PROD_DATABASE": "md:analytics"})
    assert env.warehouse == "md:analytics_clone_pr_7"
    store = MotherDuckClones(env.prod_warehouse, connect=lambda: pytest.fail("no network here"))
    assert store.database("pr-7") == "analytics_clone_pr_7"
    assert motherduck_create_sql("analytics", "analytics_clone_pr_7") == (
        'create or replace database "analytics_clone_pr_7" from "analytics"'
    )
    assert motherduck_drop_sql("analytics_clone_pr_7") == 'drop database if exists "analytics_clone_pr_7"'
    assert motherduck_database("md:analytics") == "analytics"
    with pytest.raises(EnvironmentConfigError, match="MOTHERDUCK_TOKEN") as error:
        motherduck_database("md:analytics?motherduck_token=s3cret")
    assert "s3cret" not in str(error.value)


def test_motherduck_listing_reads_clone_markers(tmp_path):
    """The listing and marker SQL run against local databases attached under MotherDuck-style names."""
    prod = tmp_path / "analytics.duckdb"
    with duckdb.connect(str(prod)) as con:
        con.execute("create table t as select 1 as id")
    LocalClones(prod, tmp_path / "data").create("pr-7")
    other = tmp_path / "other.duckdb"
    duckdb.connect(str(other)).close()

    def connect() -> duckdb.DuckDBPyConnection:
        con = duckdb.connect()
        con.execute(f"attach '{prod}' as analytics (read_only)")
        con.execute(f"attach '{tmp_path / 'data/warehouse/branches/pr-7.duckdb'}' as analytics_clone_pr_7")
        con.execute(f"attach '{other}' as analytics_clone_9")  # named like a clone, carries no marker
        return con

    clones = {clone.location: clone for clone in MotherDuckClones("md:analytics", connect=connect).list()}
    assert set(clones) == {"md:analytics_clone_pr_7", "md:analytics_clone_9"}
    assert clones["md:analytics_clone_pr_7"].branch_id == "pr-7"
    assert clones["md:analytics_clone_pr_7"].created_at is not None
    assert clones["md:analytics_clone_9"].created_at is None
    with pytest.raises(EnvironmentConfigError, match="is not the clone of branch '9'"):
        MotherDuckClones("md:analytics", connect=connect).drop("9")


def test_a_local_clone_is_copied_through_a_bounded_duckdb(tmp_path, monkeypatch):
    """The copy's DuckDB has a memory limit and its own spill folder; a prod larger than the limit still clones
    whole, and the spill folder is gone afterwards."""
    from orchestration.branch import clones

    with copy_session(tmp_path / "spill") as con:
        assert con.execute("select current_setting('memory_limit'), current_setting('temp_directory')").fetchone() == (
            "488.2 MiB",
            str(tmp_path / "spill"),
        )
    prod = tmp_path / "prod.duckdb"
    with duckdb.connect(str(prod)) as con:
        con.execute("create schema marts")
        con.execute("create table marts.big as select range as id, md5(range::varchar) as note from range(2000000)")
        expected = con.execute("select count(*), sum(hash(id, note)) from marts.big").fetchone()
    monkeypatch.setattr(clones, "CLONE_MEMORY_LIMIT", "32MB")
    store = LocalClones(prod, tmp_path / "data")
    clone = store.create("9")
    with duckdb.connect(clone.location, read_only=True) as con:
        assert con.execute("select count(*), sum(hash(id, note)) from marts.big").fetchone() == expected
    assert [path.name for path in store.folder.iterdir()] == ["9.duckdb"]
