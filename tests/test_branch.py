"""PR branches on local files, end to end through the `elt branch` commands the GitHub workflow runs: clone the
published prod (Write-Audit-Publish, as a real prod looks), change a mart in the PR's copy of the project and add a
model over it, build only what changed, drop. The mart is picked from the manifest and the warehouse, whatever
sources the project has. Prod is compared by content (rows and a hash of every table). Guard tests, the sweep (CLI,
Dagster job and schedule) and the MotherDuck SQL."""

from __future__ import annotations

import json
import shutil
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
from orchestration.lib.environment import EnvironmentConfigError, resolve
from orchestration.lib.warehouse import WarehouseResource
from tests.support import (
    closure,
    copy_project,
    copy_warehouse,
    cut_by_the_dev_window,
    elt,
    mart_models,
    query,
    rebuilt_as_in_prod,
    table_hashes,
)

BRANCH = "7"
NEW_MODEL = "branch_probe"


# ---------------------------------------------------------------- what the manifest and the warehouse say


def relation(node: dict) -> str:
    return f'"{node["schema"]}"."{node.get("alias") or node["name"]}"'


def content(warehouse: Path, relation_sql: str) -> tuple[int, str]:
    """Rows and an md5 over every row of a table or view, as `table_hashes` counts a table."""
    return query(
        warehouse,
        f"select count(*), md5(coalesce(string_agg(row::varchar, '|' order by row::varchar), '')) "
        f"from {relation_sql} as row",
    )[0]


def pick_mart(manifest: dict, cut: set[str]) -> dict:
    """A mart the branch rebuilds exactly as prod has it, with the most models downstream of it (they run too)."""
    fits = [node for node in mart_models(manifest) if rebuilt_as_in_prod(manifest, node["unique_id"], cut)]
    if not fits:
        pytest.skip("every mart reads a source the dev data window cuts: no branch rebuild equals prod here")
    return max(fits, key=lambda node: sum(n.startswith("model.") for n in closure(manifest, node["unique_id"])))


def change_project(project: Path, target: Path, mart: dict) -> Path:
    """The PR: a comment in one mart (its code changed, its data not) and a new model over that mart."""
    pr = Path(shutil.copytree(project, target))
    changed = pr / mart["original_file_path"]
    changed.write_text(changed.read_text() + "\n-- changed in the pull request\n")
    (changed.parent / f"{NEW_MODEL}.sql").write_text(f"select * from {{{{ ref('{mart['name']}') }}}}\n")
    return pr


def test_full_cycle_on_local_files(published_prod, tmp_path):
    prod = copy_warehouse(published_prod, tmp_path / "prod")
    project = copy_project(tmp_path / "project")
    data_dir = tmp_path / "data"
    settings = {"ELT_DATA_DIR": str(data_dir), "ELT_PROD_DATABASE": str(prod)}
    before = table_hashes(prod)
    assert f"{META_SCHEMA}.dbt_prod_manifest" in before

    created = elt("branch", "create", BRANCH, "--project-dir", str(project), settings=settings)
    assert created.returncode == 0, created.stdout + created.stderr
    clone = data_dir / "warehouse" / "branches" / f"{BRANCH}.duckdb"
    assert {name: value for name, value in table_hashes(clone).items() if not name.endswith(MARKER_TABLE)} == before
    # every view a reader queries (a model's own schema, not a Write-Audit-Publish slot) reads the clone
    manifest = json.loads((data_dir / "branches" / BRANCH / "target" / "manifest.json").read_text())
    reader_schemas = {node["schema"] for node in manifest["nodes"].values() if node["resource_type"] == "model"}
    with duckdb.connect(str(clone), read_only=True) as con:
        views = con.execute("select schema_name, view_name from duckdb_views() where not internal").fetchall()
        read = [(schema, view) for schema, view in views if schema in reader_schemas]
        assert read, views
        for schema, view in read:
            con.execute(f'select count(*) from "{schema}"."{view}"').fetchone()
        for node in manifest["nodes"].values():  # and every model is where its readers look for it
            if node["resource_type"] == "model" and node["config"]["materialized"] != "ephemeral":
                con.execute(f"select count(*) from {relation(node)}").fetchone()

    cut = cut_by_the_dev_window(manifest, prod, clone)
    mart = pick_mart(manifest, cut)
    pr = change_project(project, tmp_path / "pr_project", mart)
    built = elt("branch", "build", BRANCH, "--project-dir", str(pr), settings=settings)
    assert built.returncode == 0, built.stdout + built.stderr
    assert "state:modified+" in built.stdout

    # slim: exactly the changed mart, the new model and what is downstream of them ran
    new_id = mart["unique_id"].rsplit(".", 1)[0] + f".{NEW_MODEL}"
    downstream = {uid for uid in closure(manifest, mart["unique_id"]) if uid.startswith("model.")}
    results = json.loads((data_dir / "branches" / BRANCH / "target" / "run_results.json").read_text())["results"]
    assert {r["unique_id"] for r in results if r["unique_id"].startswith("model.")} == {
        mart["unique_id"],
        new_id,
        *downstream,
    }
    assert all(r["status"] in ("success", "pass") for r in results)

    # the branch sees prod's data plus the change: the rebuilt mart and the model over it hold prod's rows
    in_prod = content(prod, relation(mart))
    assert in_prod[0] > 0
    assert content(clone, relation(mart)) == in_prod
    assert content(clone, f'"{mart["schema"]}"."{NEW_MODEL}"') == in_prod
    # prod's tables are untouched in the clone; the build added a table for each model it built as one
    after_build = table_hashes(clone)
    assert {name: after_build[name] for name in before} == before
    pr_manifest = json.loads((data_dir / "branches" / BRANCH / "target" / "manifest.json").read_text())
    tables = {
        relation(pr_manifest["nodes"][uid]).replace('"', "")
        for uid in (mart["unique_id"], new_id, *downstream)
        if pr_manifest["nodes"][uid]["config"]["materialized"] not in ("view", "ephemeral")
    }
    assert set(after_build) - set(before) == {f"{META_SCHEMA}.{MARKER_TABLE}", *tables}

    dropped = elt("branch", "drop", BRANCH, settings=settings)
    assert dropped.returncode == 0, dropped.stdout + dropped.stderr
    assert not clone.exists()
    assert table_hashes(prod) == before, "prod must not change by content"


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
