"""`elt branch diff` end to end on local files: prod built once by dbt, a PR cloned and built with the `elt branch`
commands the workflow runs, then diffed with the workflow's own diff command line. One PR carries every kind of
change the report must show (so dbt runs once per kind of command, not per case):

- a column's formula in one mart (`fct_close_approaches.relative_velocity_kps` rounded), with its downstream mart;
- a column added (`dim_asteroids.asteroid_name_length`) and a model removed (`fct_hackernews_stories_daily`);
- a model without a key (`diff_probe_keyless`, filtered): whole-row diff;
- a comment-only change (`fct_share_prices_daily`): listed as unchanged.

Plus the diff SQL on small tables (keys that break, retyped columns, the MotherDuck session) and the bench row.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import duckdb
import pytest
import yaml

from benchmarks.generate import SCALES
from benchmarks.harness import Bench
from orchestration.branch.diff import (
    MARKER,
    Relation,
    Report,
    diff_tables,
    failures,
    model_key,
    session_for,
    to_markdown,
)
from orchestration.lib.dbt import run_dbt
from orchestration.lib.environment import REPO_ROOT, resolve
from tests.test_branch import copy_project, elt, table_hashes

BRANCH = "7"
WORKFLOW = REPO_ROOT / ".github" / "workflows" / "branch.yml"
FORMULA_MODEL, DOWNSTREAM_MODEL = "fct_close_approaches", "fct_close_approaches_daily"
WIDENED_MODEL, NEW_COLUMN = "dim_asteroids", "asteroid_name_length"
REMOVED_MODEL = "fct_hackernews_stories_daily"
KEYLESS_MODEL = "diff_probe_keyless"
COMMENT_MODEL = "fct_share_prices_daily"


@pytest.fixture(scope="module")
def prod(tmp_path_factory, demo_raw_warehouse) -> dict:
    """A prod warehouse built by dbt from the project plus one model with no key, its manifest published."""
    root = tmp_path_factory.mktemp("branch_diff")
    warehouse = root / "prod" / "prod.duckdb"
    warehouse.parent.mkdir()
    shutil.copy(demo_raw_warehouse, warehouse)
    project = copy_project(root / "project")
    (project / "models" / "marts" / f"{KEYLESS_MODEL}.sql").write_text(
        "select product_name, product_price from {{ ref('stg_shop__products') }}\n"
    )
    settings = {"ELT_DATA_DIR": str(root / "data"), "ELT_PROD_DATABASE": str(warehouse)}
    built = run_dbt(resolve({**settings, "ELT_ENV": "prod"}), ["run"], project, root / "prod_target")
    assert built.ok, built.failed
    manifest = str(root / "prod_target" / "manifest.json")
    published = elt("branch", "publish-state", "--manifest", manifest, settings={**settings, "ELT_ENV": "prod"})
    assert published.returncode == 0, published.stdout + published.stderr
    return {"root": root, "warehouse": warehouse, "project": project, "settings": settings}


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}: the project changed under the test"
    path.write_text(text.replace(old, new, 1))


def make_pr(project: Path, target: Path, price_cut: float) -> Path:
    pr = Path(shutil.copytree(project, target))
    models = pr / "models" / "marts"
    _replace(models / "nasa" / f"{FORMULA_MODEL}.sql", "        relative_velocity_kps,\n",
             "        round(relative_velocity_kps, 1) as relative_velocity_kps,\n")  # fmt: skip
    _replace(
        models / "nasa" / f"{WIDENED_MODEL}.sql",
        "        listings.last_feed_date\n",
        f"        listings.last_feed_date,\n        cast(length(latest_listing.asteroid_name) as integer) as "
        f"{NEW_COLUMN}\n",
    )
    spec_path = models / "nasa" / "_nasa__models.yml"
    spec = yaml.safe_load(spec_path.read_text())
    widened = next(model for model in spec["models"] if model["name"] == WIDENED_MODEL)
    widened["columns"].append({"name": NEW_COLUMN, "data_type": "integer", "description": "Length of the name."})
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    shutil.rmtree(models / "hackernews")  # the removed mart: its SQL and its YAML (tests, unit test)
    (models / f"{KEYLESS_MODEL}.sql").write_text(
        f"select product_name, product_price from {{{{ ref('stg_shop__products') }}}} "
        f"where product_price >= {price_cut}\n"
    )
    comment = next(pr.glob(f"models/**/{COMMENT_MODEL}.sql"))
    comment.write_text(comment.read_text() + "\n-- reworded in the pull request\n")
    return pr


def workflow_commands(job: str = "build") -> list[list[str]]:
    """Every `uv run elt ...` command line of a job of the workflow, split as bash would (variables kept)."""
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"][job]["steps"]
    commands = []
    for step in steps:
        for line in (step.get("run") or "").splitlines():
            if "uv run elt " in line:
                commands.append(shlex.split(line.split("uv run ", 1)[1]))
    return commands


def run_workflow_command(argv: list[str], settings: dict[str, str], *extra: str):
    """A workflow command as the job runs it, with its variables set to this test's values."""
    variables = {"BRANCH_ID": BRANCH, "ELT_DATA_DIR": settings["ELT_DATA_DIR"]}
    args = [re.sub(r"\$\{?(\w+)\}?", lambda m: variables[m.group(1)], arg) for arg in argv[1:]]
    return elt(*args, *extra, settings=settings)


@pytest.fixture(scope="module")
def diffed(prod) -> dict:
    """The PR cloned, built and diffed by the workflow's own commands; prod hashed before and after."""
    settings, root = prod["settings"], prod["root"]
    before = table_hashes(prod["warehouse"])
    with duckdb.connect(str(prod["warehouse"]), read_only=True) as con:
        price_cut = con.execute(f"select median(product_price) from marts.{KEYLESS_MODEL}").fetchone()[0]
    pr = make_pr(prod["project"], root / "pr_project", float(price_cut))
    commands = {argv[2]: argv for argv in workflow_commands() if argv[:2] == ["elt", "branch"]}
    assert {"create", "build", "diff"} <= set(commands), commands
    outputs = {}
    extra = {"create": [], "build": [], "diff": ["--fail-on", "added-rows"]}  # no model gains rows: exit 0
    for name in ("create", "build", "diff"):
        result = run_workflow_command(commands[name], settings, "--project-dir", str(pr), *extra[name])
        assert result.returncode == 0, f"{name}: {result.stdout[-3000:]}{result.stderr[-3000:]}"
        outputs[name] = result
    paths = {flag: commands["diff"][commands["diff"].index(flag) + 1] for flag in ("--json", "--markdown")}
    data_dir = settings["ELT_DATA_DIR"]
    report = json.loads(Path(paths["--json"].replace("$ELT_DATA_DIR", data_dir)).read_text())
    markdown = Path(paths["--markdown"].replace("$ELT_DATA_DIR", data_dir)).read_text()
    return {
        **prod,
        "pr": pr,
        "before": before,
        "report": report,
        "models": {model["name"]: model for model in report["models"]},
        "markdown": markdown,
        "stdout": outputs["diff"].stdout,
        "price_cut": price_cut,
    }


def _prod_count(prod: dict, sql: str) -> int:
    with duckdb.connect(str(prod["warehouse"]), read_only=True) as con:
        return con.execute(sql).fetchone()[0]


def test_formula_change_names_the_model_the_column_and_the_rows(diffed):
    models = diffed["models"]
    changed = models[FORMULA_MODEL]
    expected = _prod_count(
        diffed,
        f"select count(*) from marts.{FORMULA_MODEL} where relative_velocity_kps <> round(relative_velocity_kps, 1)",
    )
    assert expected > 0
    assert changed["status"] == "changed" and changed["method"] == "keyed"
    assert changed["key"] == ["close_approach_id"] and changed["key_source"] == "unique + not_null tests"
    assert (changed["changed_rows"], changed["added_rows"], changed["removed_rows"]) == (expected, 0, 0)
    assert changed["changed_columns"] == {"relative_velocity_kps": expected}
    assert changed["rows_before"] == changed["rows_after"]
    sample = changed["samples"]["changed"][0]
    assert set(sample["changes"]) == {"relative_velocity_kps"}
    values = sample["changes"]["relative_velocity_kps"]
    assert float(values["after"]) == round(float(values["before"]), 1) != float(values["before"])

    # downstream: the daily mart changes in its own column, by its own count
    downstream = models[DOWNSTREAM_MODEL]
    expected_days = _prod_count(
        diffed,
        f"select count(*) from marts.{DOWNSTREAM_MODEL} "
        "where fastest_relative_velocity_kps <> round(fastest_relative_velocity_kps, 1)",
    )
    assert downstream["status"] == "changed"
    assert downstream["changed_rows"] == expected_days > 0
    assert downstream["changed_columns"] == {"fastest_relative_velocity_kps": expected_days}

    # exactly the build's selection plus the removed model; a reworded model is unchanged
    manifest = json.loads((diffed["root"] / "prod_target" / "manifest.json").read_text())
    built = json.loads(
        (Path(diffed["settings"]["ELT_DATA_DIR"]) / "branches" / BRANCH / "target" / "run_results.json").read_text()
    )["results"]
    built_models = {r["unique_id"] for r in built if r["unique_id"].startswith("model.")}
    assert {m["unique_id"] for m in diffed["report"]["models"] if m["status"] != "removed"} == built_models
    assert {m["name"] for m in diffed["report"]["models"] if m["status"] == "changed"} == {
        FORMULA_MODEL,
        DOWNSTREAM_MODEL,
        WIDENED_MODEL,
        KEYLESS_MODEL,
    }
    assert models[COMMENT_MODEL]["status"] == "unchanged"
    assert f"model.elt_platform.{COMMENT_MODEL}" in manifest["nodes"]
    markdown = diffed["markdown"]
    assert markdown.startswith(MARKER) and diffed["stdout"] == markdown
    assert (
        f"`marts.{FORMULA_MODEL}`" in markdown and "`relative_velocity_kps`" in markdown and f"{expected:,}" in markdown
    )
    assert re.search(rf"Unchanged: .*`marts\.{COMMENT_MODEL}`", markdown)


def test_added_column_and_removed_model(diffed):
    widened = diffed["models"][WIDENED_MODEL]
    assert widened["status"] == "changed"
    assert widened["columns_added"] == [{"name": NEW_COLUMN, "type": "INTEGER"}]
    assert widened["columns_removed"] == [] and widened["columns_retyped"] == []
    assert (widened["changed_rows"], widened["added_rows"], widened["removed_rows"]) == (0, 0, 0)

    removed = diffed["models"][REMOVED_MODEL]
    assert removed["status"] == "removed"
    assert removed["rows_before"] == _prod_count(diffed, f"select count(*) from marts.{REMOVED_MODEL}")
    assert removed["rows_after"] is None
    assert diffed["report"]["summary"]["removed"] == 1
    assert f"`marts.{REMOVED_MODEL}`: removed" in diffed["markdown"]
    assert f"`{NEW_COLUMN}` | added | INTEGER" in diffed["markdown"]


def test_model_without_a_key_gets_a_whole_row_diff(diffed):
    keyless = diffed["models"][KEYLESS_MODEL]
    cut = diffed["price_cut"]
    expected = _prod_count(diffed, f"select count(*) from marts.{KEYLESS_MODEL} where product_price < {cut}")
    assert expected > 0
    assert keyless["method"] == "whole-row" and keyless["key"] is None
    assert "no primary_key constraint and no unique test" in keyless["note"]
    assert (keyless["removed_rows"], keyless["added_rows"]) == (expected, 0)
    assert all(float(row["product_price"]) < float(cut) for row in keyless["samples"]["removed"])
    assert f"#### `marts.{KEYLESS_MODEL}`: changed\nWhole-row diff: no primary_key constraint" in diffed["markdown"]


def test_prod_is_unchanged_and_the_workflow_runs_only_tested_commands(diffed):
    assert table_hashes(diffed["warehouse"]) == diffed["before"], "prod must not change by content"
    tested = {("env",), ("branch", "create"), ("branch", "build"), ("branch", "diff"), ("branch", "drop")}
    tested |= {("branch", "sweep")}  # tests/test_branch.py
    for job in ("build", "drop", "sweep"):
        for argv in workflow_commands(job):
            assert argv[0] == "elt"
            assert tuple(argv[1:3]) in tested or tuple(argv[1:2]) in tested, argv
    workflow = WORKFLOW.read_text()
    assert "GITHUB_STEP_SUMMARY" in workflow and MARKER in workflow


def test_fail_on_exits_non_zero_only_for_the_kinds_that_occur(diffed):
    # the fixture's run asked for --fail-on added-rows, which did not occur, and exited 0
    assert all(model["added_rows"] == 0 for model in diffed["report"]["models"])
    settings, pr = diffed["settings"], str(diffed["pr"])
    loud = elt("branch", "diff", BRANCH, "--project-dir", pr, "--format", "json", "--samples", "0",
               "--fail-on", "added-rows",
               "--fail-on", "removed-rows", "--fail-on", "changed-rows", "--fail-on", "schema",
               settings=settings)  # fmt: skip
    assert loud.returncode == 1
    assert json.loads(loud.stdout)["summary"] == diffed["report"]["summary"]
    lines = [line for line in loud.stderr.splitlines() if "--fail-on" in line]
    assert lines == [
        f"elt branch diff: --fail-on removed-rows: marts.{KEYLESS_MODEL}",
        f"elt branch diff: --fail-on changed-rows: marts.{FORMULA_MODEL}, marts.{DOWNSTREAM_MODEL}",
        f"elt branch diff: --fail-on schema: marts.{WIDENED_MODEL}, marts.{REMOVED_MODEL}",
    ], loud.stderr[-2000:]


# ---------------------------------------------------------------- the diff SQL on small tables


@pytest.fixture
def versions(tmp_path) -> dict:
    """prod and a branch clone as two small files, through the session a branch diff opens."""
    prod, branch = tmp_path / "prod.duckdb", tmp_path / "data" / "warehouse" / "branches" / "3.duckdb"
    branch.parent.mkdir(parents=True)
    for path, changes in ((prod, ""), (branch, "update m.t set v = v * 10 where id in (2, 4); delete from m.t "
                                                "where id = 5; insert into m.t values (99, 1, 'x');")):  # fmt: skip
        with duckdb.connect(str(path)) as con:
            con.execute("create schema m; create table m.t as select range as id, range % 3 as v, 'a' as s "
                        "from range(10)")  # fmt: skip
            con.execute(changes or "select 1")
            con.execute("create table m.dup as select range % 2 as id, range as v from range(4)")
            retyped = "cast(range as varchar)" if path == branch else "range"
            con.execute(f"create table m.r as select range as id, {retyped} as v from range(3)")
    env = resolve({"ELT_ENV": "branch", "ELT_BRANCH_ID": "3", "ELT_PROD_DATABASE": str(prod),
                   "ELT_DATA_DIR": str(tmp_path / "data")})  # fmt: skip
    session = session_for(env, "64MB")
    return {"prod": prod, "session": session}


def test_keyed_and_whole_row_diffs_and_keys_that_break(versions):
    session = versions["session"]
    before = table_hashes(versions["prod"])
    with session.open() as con:
        prod, branch = (Relation(c, "m", "t") for c in (session.prod_catalog, session.branch_catalog))
        keyed = diff_tables(con, prod, branch, ["id"])
        assert (keyed.added_rows, keyed.removed_rows, keyed.changed_rows) == (1, 1, 2)  # ids 2 and 4 changed
        assert keyed.changed_columns == {"v": 2}
        assert keyed.samples["changed"][0] == {"key": {"id": "2"}, "changes": {"v": {"before": "2", "after": "20"}}}
        assert keyed.samples["removed"] == [{"id": "5", "v": "2", "s": "a"}]
        whole = diff_tables(con, prod, branch, None, no_key_reason="no key here")
        assert whole.method == "whole-row" and whole.note == "no key here: whole-row diff"
        assert (whole.added_rows, whole.removed_rows) == (keyed.changed_rows + 1, keyed.changed_rows + 1)
        r = [Relation(c, "m", "r") for c in (session.prod_catalog, session.branch_catalog)]
        retyped = diff_tables(con, *r, ["id"])
        assert retyped.columns_retyped == [{"name": "v", "before": "BIGINT", "after": "VARCHAR"}]
        assert retyped.changed_rows == 0  # compared as text
        dup = [Relation(c, "m", "dup") for c in (session.prod_catalog, session.branch_catalog)]
        broken = diff_tables(con, *dup, ["id"])
        assert broken.method == "whole-row" and "not unique" in broken.note
        assert con.execute("select current_setting('memory_limit')").fetchone()[0].startswith("61")
    assert table_hashes(versions["prod"]) == before


def test_key_from_the_manifest():
    def node(columns, constraints=()):
        return {"columns": {c: {"name": c, "constraints": []} for c in columns}, "constraints": list(constraints)}

    def test(model, name, column=None, **kwargs):
        return {"resource_type": "test", "attached_node": model, "column_name": column,
                "test_metadata": {"name": name, "kwargs": kwargs}}  # fmt: skip

    manifest = {
        "nodes": {
            "model.p.pk": node(["a", "b"], [{"type": "primary_key", "columns": ["b"]}]),
            "model.p.tests": node(["a", "b", "c"]),
            "model.p.combo": node(["a", "b"]),
            "model.p.none": node(["a"]),
            "t1": test("model.p.tests", "unique", "c"),
            "t2": test("model.p.tests", "not_null", "c"),
            "t3": test("model.p.tests", "unique", "a"),
            "t4": test("model.p.combo", "unique_combination_of_columns", combination_of_columns=["a", "b"]),
        }
    }
    assert model_key(manifest, "model.p.pk") == (["b"], "primary_key constraint")
    assert model_key(manifest, "model.p.tests") == (["c"], "unique + not_null tests")
    assert model_key(manifest, "model.p.combo") == (["a", "b"], "unique_combination_of_columns test")
    assert model_key(manifest, "model.p.none")[0] is None


def test_motherduck_session_is_one_workspace_with_the_scratch_table_in_the_clone(tmp_path):
    env = resolve({"ELT_ENV": "branch", "ELT_BRANCH_ID": "pr-7", "ELT_PROD_DATABASE": "md:analytics",
                   "ELT_DATA_DIR": str(tmp_path)})  # fmt: skip
    session = session_for(env, "256MB")
    assert session.connect_to == "md:"
    assert (session.prod_catalog, session.branch_catalog) == ("analytics", "analytics_clone_pr_7")
    assert session.scratch == '"analytics_clone_pr_7".elt_meta'
    assert not any(statement.startswith("attach") for statement in session.setup)
    assert "set memory_limit = '256MB'" in session.setup

    # the same SQL against local files attached under the workspace's names (MotherDuck is not reachable here)
    prod, clone = tmp_path / "analytics.duckdb", tmp_path / "clone.duckdb"
    for path, extra in ((prod, 0), (clone, 2)):
        with duckdb.connect(str(path)) as con:
            con.execute(f"create schema marts; create table marts.t as select range as id from range({5 + extra})")
    before = table_hashes(prod)

    def connect() -> duckdb.DuckDBPyConnection:
        con = duckdb.connect()
        con.execute(f"attach '{prod}' as analytics (read_only)")
        con.execute(f"attach '{clone}' as analytics_clone_pr_7")
        return con

    with session.open(connect) as con:
        result = diff_tables(
            con, Relation("analytics", "marts", "t"), Relation("analytics_clone_pr_7", "marts", "t"), ["id"],
            session.scratch,
        )  # fmt: skip
        assert (result.added_rows, result.removed_rows, result.changed_rows) == (2, 0, 0)
        assert [row["id"] for row in result.samples["added"]] == ["5", "6"]
    assert table_hashes(prod) == before


def test_fail_kinds_and_markdown_of_an_empty_report():
    report = Report("1", "prod.duckdb", "1.duckdb", "every model", [])
    assert failures(report, ["added-rows", "schema"]) == []
    assert "The PR changes no model." in to_markdown(report)


def test_bench_row_at_a_small_scale(tmp_path):
    bench = Bench(SCALES["tiny"], tmp_path, repeat=1, only=("diff",), progress=lambda message: None)
    [stage] = bench.run()
    assert stage.name == "branch_diff" and stage.rows == SCALES["tiny"].orders
    assert stage.ratio > 0 and stage.platform_peak_mib > 0
    assert str(stage.target) == ">= 0.8x"
