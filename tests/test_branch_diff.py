"""`elt branch diff` end to end on local files: the published prod (Write-Audit-Publish, as a real prod looks) cloned,
a PR built and diffed with the workflow's own command lines. One PR carries every kind of change the report must
show (so dbt runs once per kind of command, not per case), each on a mart picked from the manifest and the
warehouse, whatever sources the project has:

- a formula: one numeric column of a keyed mart changes for exactly one key, and what is downstream is rebuilt;
- a column added to a leaf mart (with its contract entry) and a leaf mart removed (its SQL, YAML entry and tests);
- a keyless model: the PR drops a mart's unique test and one of its rows, so the diff falls back to whole rows;
- a comment-only change: listed as unchanged.

A mart that reads a source the dev data window cuts is never picked for a change whose rows are checked: the branch
rebuilds it from fewer rows than prod has. A kind of change no mart fits is skipped, saying why.

Plus the diff SQL on small tables (keys that break, retyped columns, whole-row diffs, the MotherDuck session) and
the bench row.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
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
from orchestration.lib.environment import REPO_ROOT, resolve
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
WORKFLOW = REPO_ROOT / ".github" / "workflows" / "branch.yml"
NEW_COLUMN = "added_in_pr"
NUMERIC = re.compile(r"(U?(TINY|SMALL|BIG|HUGE)?INT(EGER)?|FLOAT|REAL|DOUBLE|DECIMAL\(\d+,\d+\))")
HARMLESS_TESTS = {"not_null", "positive_value"}  # still pass when a not-null positive value grows by 1


# ---------------------------------------------------------------- what the manifest and the warehouse say


def models_in(unique_ids: set[str]) -> set[str]:
    return {uid for uid in unique_ids if uid.startswith("model.")}


def relation(node: dict) -> str:
    """`schema.alias`, as the report names a model."""
    return f"{node['schema']}.{node.get('alias') or node['name']}"


def sql_name(node: dict) -> str:
    return f'"{node["schema"]}"."{node.get("alias") or node["name"]}"'


def is_leaf(manifest: dict, unique_id: str) -> bool:
    """Nothing but tests (and unit tests) is downstream of the model."""
    return all(uid.startswith(("test.", "unit_test.")) for uid in manifest["child_map"].get(unique_id, []))


def checks_on(manifest: dict, unique_id: str) -> list[dict]:
    """The data tests that read the model (its own, other models' relationships to it, singular ones)."""
    return [manifest["nodes"][uid] for uid in manifest["child_map"].get(unique_id, []) if uid.startswith("test.")]


def key_from_tests(manifest: dict, unique_id: str) -> str | None:
    """The one column with both a unique and a not_null test, when that is all that makes the model's key (no
    primary_key constraint, no combination test, no other unique column)."""
    node = manifest["nodes"][unique_id]
    constraints = [*node.get("constraints", []), *(c for col in node["columns"].values() for c in col["constraints"])]
    if any(constraint.get("type") == "primary_key" for constraint in constraints):
        return None
    generic = [
        t for t in checks_on(manifest, unique_id) if t.get("attached_node") == unique_id and t.get("test_metadata")
    ]
    if any(t["test_metadata"]["name"] == "unique_combination_of_columns" for t in generic):
        return None
    unique = {t["column_name"] for t in generic if t["test_metadata"]["name"] == "unique"}
    not_null = {t["column_name"] for t in generic if t["test_metadata"]["name"] == "not_null"}
    return next(iter(unique)) if len(unique) == 1 and unique <= not_null else None


def unit_test_rows(manifest: dict, name: str) -> str | None:
    """The rows of the model's unit tests as text (a value the PR singles out must not be among them), or None
    when a fixture is SQL and its rows can't be read."""
    fixtures = [
        fixture
        for unit in manifest.get("unit_tests", {}).values()
        if unit["model"] == name
        for fixture in (*unit["given"], unit["expect"])
    ]
    if any(fixture.get("format") == "sql" for fixture in fixtures):
        return None
    return json.dumps([fixture.get("rows") for fixture in fixtures], default=str)


def one_key_value(manifest: dict, node: dict, key: str, prod: Path, where: str = "true") -> str | None:
    """A key value of a row of the mart in prod that no unit test of it names."""
    known = unit_test_rows(manifest, node["name"])
    if known is None:
        return None
    values = query(
        prod, f'select cast("{key}" as varchar) as v from {sql_name(node)} where {where} order by v limit 100'
    )
    return next((value for (value,) in values if value not in known), None)


@dataclass
class Candidate:
    node: dict
    key: str | None = None
    value: str | None = None  # the key of the one row the PR changes or drops
    column: tuple[str, str] | None = None  # (name, DuckDB type) of the numeric column the formula changes

    @property
    def uid(self) -> str:
        return self.node["unique_id"]

    @property
    def name(self) -> str:
        return self.node["name"]

    @property
    def relation(self) -> str:
        return relation(self.node)


@dataclass
class Roles:
    """The marts the PR changes, each for one kind of change (None: no mart fits, the case is skipped)."""

    formula: Candidate | None = None
    widened: Candidate | None = None
    keyless: Candidate | None = None
    removed: Candidate | None = None
    comment: Candidate | None = None
    why: dict[str, str] = field(default_factory=dict)

    def need(self, *roles: str) -> None:
        for role in roles:
            if getattr(self, role) is None:
                pytest.skip(f"no mart fits the {role} change: {self.why[role]}")


def formula_candidate(manifest: dict, node: dict, prod: Path, cut: set[str]) -> Candidate | None:
    """A keyed mart rebuilt as in prod, with a numeric column that no test but not_null / positive_value checks and
    tests downstream that read only what the branch rebuilds from it (so adding 1 to one value passes them)."""
    uid = node["unique_id"]
    key = key_from_tests(manifest, uid)
    if key is None or not rebuilt_as_in_prod(manifest, uid, cut):
        return None
    rebuilt = {uid} | models_in(closure(manifest, uid))
    downstream_tests = [manifest["nodes"][t] for t in closure(manifest, uid) if t.startswith("test.")]
    singular = [test for test in downstream_tests if not test.get("test_metadata")]
    if any(not models_in(set(manifest["parent_map"][t["unique_id"]])) <= rebuilt for t in singular):
        return None
    tested = {}
    for test in checks_on(manifest, uid):
        if test.get("attached_node") == uid and test.get("column_name"):
            tested.setdefault(test["column_name"], set()).add(test["test_metadata"]["name"])
    columns = query(
        prod,
        "select column_name, data_type from information_schema.columns where table_catalog = current_database() "
        f"and table_schema = '{node['schema']}' and table_name = '{node.get('alias') or node['name']}' "
        "order by ordinal_position",
    )
    for name, data_type in columns:
        if name != key and NUMERIC.fullmatch(data_type) and tested.get(name, set()) <= HARMLESS_TESTS:
            value = one_key_value(manifest, node, key, prod, f'"{name}" is not null')
            if value is not None:
                return Candidate(node, key, value, (name, data_type))
    return None


def keyless_candidate(manifest: dict, node: dict, prod: Path, cut: set[str]) -> Candidate | None:
    """A leaf mart rebuilt as in prod whose key is a unique + not_null test pair, with no test but its own (dropping
    one of its rows must fail none)."""
    uid = node["unique_id"]
    key = key_from_tests(manifest, uid)
    tests = checks_on(manifest, uid)
    if key is None or not is_leaf(manifest, uid) or not rebuilt_as_in_prod(manifest, uid, cut):
        return None
    if any(not test.get("test_metadata") or test.get("attached_node") != uid for test in tests):
        return None
    value = one_key_value(manifest, node, key, prod)
    return Candidate(node, key, value) if value is not None else None


def widened_candidate(manifest: dict, node: dict, cut: set[str]) -> Candidate | None:
    """A keyed leaf mart rebuilt as in prod (nothing downstream sees the added column)."""
    uid = node["unique_id"]
    key = key_from_tests(manifest, uid)
    if key is None or not is_leaf(manifest, uid) or not rebuilt_as_in_prod(manifest, uid, cut):
        return None
    return Candidate(node, key)


def removable_candidate(manifest: dict, node: dict) -> Candidate | None:
    """A leaf mart whose tests are its own or singular ones (deleted with it)."""
    uid = node["unique_id"]
    tests = checks_on(manifest, uid)
    if not is_leaf(manifest, uid) or any(t.get("test_metadata") and t.get("attached_node") != uid for t in tests):
        return None
    return Candidate(node)


def pick_roles(manifest: dict, prod: Path, cut: set[str]) -> Roles:
    """The formula change goes to the mart with the most models downstream; then each other change gets its own mart,
    outside what the formula change reaches, filling as many kinds as the marts allow."""
    marts = mart_models(manifest)
    roles = Roles(
        why={
            "formula": "none has a single unique + not_null key column, a numeric column only not_null or "
            "positive_value tests check, and a branch rebuild equal to prod (dev data window)",
            "widened": "no keyed leaf mart is left whose branch rebuild equals prod (dev data window)",
            "keyless": "no keyed leaf mart with only its own generic tests is left whose branch rebuild equals prod",
            "removed": "no leaf mart whose tests are only its own or singular ones is left",
            "comment": "no mart is left whose branch rebuild equals prod (dev data window)",
        }
    )
    formulas = [c for node in marts if (c := formula_candidate(manifest, node, prod, cut))]
    roles.formula = max(formulas, key=lambda c: len(models_in(closure(manifest, c.uid))), default=None)
    reached = set()
    if roles.formula:
        uid = roles.formula.uid
        reached = {uid} | closure(manifest, uid) | closure(manifest, uid, "parent_map")
    left = [node for node in marts if node["unique_id"] not in reached]
    candidates = {
        "keyless": [c for node in left if (c := keyless_candidate(manifest, node, prod, cut))],
        "widened": [c for node in left if (c := widened_candidate(manifest, node, cut))],
        "comment": [Candidate(node) for node in left if rebuilt_as_in_prod(manifest, node["unique_id"], cut)],
        "removed": [c for node in left if (c := removable_candidate(manifest, node))],
    }
    best: dict[str, Candidate] = {}

    def search(order: list[str], taken: set[str], chosen: dict[str, Candidate]) -> None:
        nonlocal best
        if len(chosen) > len(best):
            best = dict(chosen)
        if not order:
            return
        role, *rest = order
        for candidate in candidates[role]:
            if candidate.uid not in taken:
                search(rest, taken | {candidate.uid}, {**chosen, role: candidate})
        search(rest, taken, chosen)

    search(list(candidates), set(), {})
    for role, candidate in best.items():
        setattr(roles, role, candidate)
    return roles


# ---------------------------------------------------------------- the pull request


def project_file(pr: Path, path: str) -> Path:
    """A manifest path (`original_file_path`, or a `patch_path` like `elt_platform://models/x.yml`) in the PR."""
    return pr / path.split("://", 1)[-1]


def model_sql(pr: Path, candidate: Candidate) -> str:
    """The model's SQL without its trailing `;`, ready to be wrapped in a CTE."""
    return project_file(pr, candidate.node["original_file_path"]).read_text().rstrip().rstrip(";")


def wrap(pr: Path, candidate: Candidate, select: str, where: str | None = None) -> None:
    """Rewrite the model as `with original as (<its SQL>) <select> from original [where <where>]`."""
    path = project_file(pr, candidate.node["original_file_path"])
    filtered = f"where {where}\n" if where else ""
    path.write_text(f"with original as (\n\n{model_sql(pr, candidate)}\n\n)\n\n{select}\nfrom original\n{filtered}")


def edit_yaml(path: Path, edit: Callable[[dict], None]) -> None:
    spec = yaml.safe_load(path.read_text())
    edit(spec)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))


def edit_entry(pr: Path, candidate: Candidate, edit: Callable[[dict], None]) -> None:
    """Let `edit` change the model's entry in the YAML file that describes it."""

    def in_entry(spec: dict) -> None:
        edit(next(model for model in spec["models"] if model["name"] == candidate.name))

    edit_yaml(project_file(pr, candidate.node["patch_path"]), in_entry)


def not_unique(test) -> bool:
    return test != "unique" and not (isinstance(test, dict) and "unique" in test)


def key_match(candidate: Candidate) -> str:
    value = candidate.value.replace("'", "''")
    return f"cast(\"{candidate.key}\" as varchar) = '{value}'"


def make_pr(pr: Path, manifest: dict, roles: Roles) -> None:
    """Every change of the PR, in place in the PR's copy of the project."""
    if formula := roles.formula:
        column, data_type = formula.column
        wrap(
            pr,
            formula,
            f'select * replace (cast(case when {key_match(formula)} then "{column}" + 1 else "{column}" end '
            f'as {data_type}) as "{column}")',
        )
    if widened := roles.widened:
        wrap(pr, widened, f"select *, cast(1 as integer) as {NEW_COLUMN}")
        edit_entry(
            pr,
            widened,
            lambda entry: entry.setdefault("columns", []).append(
                {"name": NEW_COLUMN, "data_type": "integer", "description": "Added by the pull request."}
            ),
        )
    if keyless := roles.keyless:
        wrap(pr, keyless, "select *", f"not ({key_match(keyless)})")

        def drop_unique_tests(entry: dict) -> None:
            for owner in (entry, *entry.get("columns", [])):
                for tests in ("data_tests", "tests"):
                    if tests in owner:
                        owner[tests] = [test for test in owner[tests] if not_unique(test)]

        edit_entry(pr, keyless, drop_unique_tests)
    if removed := roles.removed:

        def drop_entries(spec: dict) -> None:
            for section, name in (("models", "name"), ("unit_tests", "model")):
                if section in spec:
                    spec[section] = [entry for entry in spec[section] if entry[name] != removed.name]

        units = [
            unit["original_file_path"] for unit in manifest["unit_tests"].values() if unit["model"] == removed.name
        ]
        for path in {removed.node["patch_path"], *units}:
            edit_yaml(project_file(pr, path), drop_entries)
        project_file(pr, removed.node["original_file_path"]).unlink()
        for test in checks_on(manifest, removed.uid):
            if not test.get("test_metadata"):  # a singular test reading the model goes with it
                project_file(pr, test["original_file_path"]).unlink(missing_ok=True)
    if comment := roles.comment:
        path = project_file(pr, comment.node["original_file_path"])
        path.write_text(path.read_text() + "\n-- reworded in the pull request\n")


# ---------------------------------------------------------------- the workflow's commands


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
def diffed(published_prod, tmp_path_factory) -> dict:
    """The published prod copied, the PR cloned, built and diffed by the workflow's own commands; prod hashed
    before. The PR is written after `create`: which marts a branch rebuilds as prod has them shows in the clone
    (its views are recreated under the dev data window). `create` only recreates views the PR does not change, and
    this PR changes tables only, so the clone is what it would be with the PR checked out first."""
    root = tmp_path_factory.mktemp("branch_diff")
    prod = copy_warehouse(published_prod, root / "prod")
    settings = {"ELT_DATA_DIR": str(root / "data"), "ELT_PROD_DATABASE": str(prod)}
    before = table_hashes(prod)
    pr = copy_project(root / "pr_project")
    commands = {argv[2]: argv for argv in workflow_commands() if argv[:2] == ["elt", "branch"]}
    assert {"create", "build", "diff"} <= set(commands), commands
    extra = {"create": [], "build": [], "diff": ["--fail-on", "added-rows"]}  # no model gains rows: exit 0
    outputs = {}

    def run(name: str) -> None:
        result = run_workflow_command(commands[name], settings, "--project-dir", str(pr), *extra[name])
        assert result.returncode == 0, f"{name}: {result.stdout[-3000:]}{result.stderr[-3000:]}"
        outputs[name] = result

    run("create")
    work = root / "data" / "branches" / BRANCH / "target"
    manifest = json.loads((work / "manifest.json").read_text())  # the project as the PR starts from it
    clone = root / "data" / "warehouse" / "branches" / f"{BRANCH}.duckdb"
    roles = pick_roles(manifest, prod, cut_by_the_dev_window(manifest, prod, clone))
    make_pr(pr, manifest, roles)
    run("build")
    built = json.loads((work / "run_results.json").read_text())["results"]
    run("diff")
    paths = {flag: commands["diff"][commands["diff"].index(flag) + 1] for flag in ("--json", "--markdown")}
    report = json.loads(Path(paths["--json"].replace("$ELT_DATA_DIR", settings["ELT_DATA_DIR"])).read_text())
    markdown = Path(paths["--markdown"].replace("$ELT_DATA_DIR", settings["ELT_DATA_DIR"])).read_text()
    return {
        "prod": prod,
        "settings": settings,
        "pr": pr,
        "before": before,
        "manifest": manifest,
        "roles": roles,
        "built": built,
        "report": report,
        "models": {model["name"]: model for model in report["models"]},
        "markdown": markdown,
        "stdout": outputs["diff"].stdout,
    }


def downstream_models(diffed: dict, candidate: Candidate | None) -> set[str]:
    """The names of the models downstream of a mart (what its change may change too)."""
    if candidate is None:
        return set()
    nodes = diffed["manifest"]["nodes"]
    return {nodes[uid]["name"] for uid in models_in(closure(diffed["manifest"], candidate.uid))}


def test_every_kind_of_change_found_a_mart_of_its_own(diffed):
    roles = diffed["roles"]
    picked = {role: getattr(roles, role) for role in ("formula", "widened", "keyless", "removed", "comment")}
    missing = [role for role, candidate in picked.items() if candidate is None]
    if missing:
        pytest.skip("; ".join(f"{role}: {roles.why[role]}" for role in missing))
    assert len({candidate.uid for candidate in picked.values()}) == len(picked)


def test_formula_change_names_the_model_the_column_and_the_row(diffed):
    roles = diffed["roles"]
    roles.need("formula")
    formula = roles.formula
    column, _ = formula.column
    changed = diffed["models"][formula.name]
    prod_value, rows = query(
        diffed["prod"],
        f'select cast("{column}" as varchar), (select count(*) from {sql_name(formula.node)}) '
        f"from {sql_name(formula.node)} where {key_match(formula)}",
    )[0]
    assert changed["status"] == "changed" and changed["method"] == "keyed"
    assert changed["key"] == [formula.key] and changed["key_source"] == "unique + not_null tests"
    assert (changed["changed_rows"], changed["added_rows"], changed["removed_rows"]) == (1, 0, 0)
    assert changed["changed_columns"] == {column: 1}
    assert changed["rows_before"] == changed["rows_after"] == rows
    assert changed["columns_added"] == changed["columns_removed"] == changed["columns_retyped"] == []
    [sample] = changed["samples"]["changed"]
    assert sample["key"] == {formula.key: formula.value}
    assert set(sample["changes"]) == {column}
    assert sample["changes"][column]["before"] == prod_value
    assert float(sample["changes"][column]["after"]) == pytest.approx(float(prod_value) + 1)

    markdown = diffed["markdown"]
    assert markdown.startswith(MARKER) and diffed["stdout"] == markdown
    assert f"#### `{formula.relation}`: changed" in markdown
    assert f"| `{column}` | 1 |" in markdown


def test_what_is_downstream_of_the_formula_change_is_rebuilt_and_diffed(diffed):
    roles = diffed["roles"]
    roles.need("formula")
    downstream = models_in(closure(diffed["manifest"], roles.formula.uid))
    if not downstream:
        pytest.skip(f"nothing is downstream of {roles.formula.relation}, the only mart fit for a formula change")
    built = {r["unique_id"]: r["status"] for r in diffed["built"]}
    by_id = {model["unique_id"]: model for model in diffed["report"]["models"]}
    for unique_id in downstream:
        assert built[unique_id] == "success", unique_id
        assert by_id[unique_id]["status"] in ("changed", "unchanged"), by_id[unique_id]
        assert by_id[unique_id]["rows_after"] is not None


def test_the_report_covers_exactly_what_the_pr_touched(diffed):
    """Exactly the build's selection plus the removed model; changed only where the PR changed something (or
    downstream of the formula change); a reworded model and what is downstream of it are unchanged."""
    roles, report, manifest = diffed["roles"], diffed["report"], diffed["manifest"]
    touched = [c for c in (roles.formula, roles.widened, roles.keyless, roles.comment) if c]
    expected = set().union(*({c.uid} | models_in(closure(manifest, c.uid)) for c in touched))
    built = {r["unique_id"] for r in diffed["built"] if r["unique_id"].startswith("model.")}
    assert built == expected
    assert all(r["status"] in ("success", "pass") for r in diffed["built"])
    assert {m["unique_id"] for m in report["models"] if m["status"] != "removed"} == built

    must_change = {c.name for c in (roles.formula, roles.widened, roles.keyless) if c}
    may_change = must_change | downstream_models(diffed, roles.formula)
    changed = {m["name"] for m in report["models"] if m["status"] == "changed"}
    assert must_change <= changed <= may_change
    others = [m for m in report["models"] if m["name"] not in may_change and m["status"] != "removed"]
    assert all(m["status"] == "unchanged" for m in others), others
    if roles.comment:
        assert diffed["models"][roles.comment.name]["status"] == "unchanged"
        assert re.search(rf"Unchanged: .*`{re.escape(roles.comment.relation)}`", diffed["markdown"])


def test_added_column_and_removed_model(diffed):
    roles = diffed["roles"]
    roles.need("widened", "removed")
    widened = diffed["models"][roles.widened.name]
    assert widened["status"] == "changed" and widened["method"] == "keyed"
    assert widened["columns_added"] == [{"name": NEW_COLUMN, "type": "INTEGER"}]
    assert widened["columns_removed"] == [] and widened["columns_retyped"] == []
    assert (widened["changed_rows"], widened["added_rows"], widened["removed_rows"]) == (0, 0, 0)
    assert f"`{NEW_COLUMN}` | added | INTEGER" in diffed["markdown"]

    removed = diffed["models"][roles.removed.name]
    assert removed["status"] == "removed"
    assert removed["relation"] == roles.removed.relation  # where readers find it, not a Write-Audit-Publish slot
    assert removed["rows_before"] == query(diffed["prod"], f"select count(*) from {sql_name(roles.removed.node)}")[0][0]
    assert removed["rows_after"] is None
    assert diffed["report"]["summary"]["removed"] == 1
    assert f"`{roles.removed.relation}`: removed" in diffed["markdown"]


def test_model_without_a_key_gets_a_whole_row_diff(diffed):
    roles = diffed["roles"]
    roles.need("keyless")
    keyless = diffed["models"][roles.keyless.name]
    assert keyless["method"] == "whole-row" and keyless["key"] is None
    assert "no primary_key constraint and no unique test" in keyless["note"]
    assert (keyless["removed_rows"], keyless["added_rows"]) == (1, 0)
    assert keyless["rows_before"] - 1 == keyless["rows_after"]
    [row] = keyless["samples"]["removed"]
    assert row[roles.keyless.key] == roles.keyless.value
    assert f"#### `{roles.keyless.relation}`: changed\nWhole-row diff: no primary_key constraint" in diffed["markdown"]


def test_prod_is_unchanged_and_the_workflow_runs_only_tested_commands(diffed):
    assert table_hashes(diffed["prod"]) == diffed["before"], "prod must not change by content"
    tested = {("env",), ("branch", "create"), ("branch", "build"), ("branch", "diff"), ("branch", "drop")}
    tested |= {("branch", "sweep")}  # tests/test_branch.py
    for job in ("build", "drop", "sweep"):
        for argv in workflow_commands(job):
            assert argv[0] == "elt"
            assert tuple(argv[1:3]) in tested or tuple(argv[1:2]) in tested, argv
    workflow = WORKFLOW.read_text()
    assert "GITHUB_STEP_SUMMARY" in workflow and MARKER in workflow


def test_fail_on_exits_non_zero_only_for_the_kinds_that_occur(diffed):
    roles = diffed["roles"]
    roles.need("formula", "widened", "keyless", "removed")
    # the fixture's run asked for --fail-on added-rows, which did not occur, and exited 0
    assert all(model["added_rows"] == 0 for model in diffed["report"]["models"])
    settings, pr = diffed["settings"], str(diffed["pr"])
    loud = elt("branch", "diff", BRANCH, "--project-dir", pr, "--format", "json", "--samples", "0",
               "--fail-on", "added-rows",
               "--fail-on", "removed-rows", "--fail-on", "changed-rows", "--fail-on", "schema",
               settings=settings)  # fmt: skip
    assert loud.returncode == 1
    assert json.loads(loud.stdout)["summary"] == diffed["report"]["summary"]
    named = {}
    for line in loud.stderr.splitlines():
        if found := re.fullmatch(r"elt branch diff: --fail-on ([\w-]+): (.*)", line):
            named[found[1]] = found[2].split(", ")
    assert list(named) == ["removed-rows", "changed-rows", "schema"], loud.stderr[-2000:]
    nodes = diffed["manifest"]["nodes"]
    downstream = {relation(nodes[uid]) for uid in models_in(closure(diffed["manifest"], roles.formula.uid))}
    assert {roles.keyless.relation} <= set(named["removed-rows"]) <= {roles.keyless.relation} | downstream
    assert {roles.formula.relation} <= set(named["changed-rows"]) <= {roles.formula.relation} | downstream
    assert sorted(named["schema"]) == sorted([roles.widened.relation, roles.removed.relation])


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
