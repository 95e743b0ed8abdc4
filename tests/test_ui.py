"""The Dagster UI as a user sees it: a real `dagster-webserver` over a prod environment that a real run populated, in
a real headless Chromium. What to expect is read from the loaded definitions and the run; what is asserted is what
the UI renders (its DOM: nodes, edges, check rows, the table name). Screenshots go to test-artifacts/."""

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from orchestration.lib.dbt_translator import WarehouseDbtTranslator
from orchestration.lib.environment import REPO_ROOT
from orchestration.lib.instance import prepare_dagster_home
from tests.browser import screenshot
from tests.support import free_port, manifest, mart_models, use_platform_env

DBT = dg.AssetSelection.tag("dagster/kind/dbt", "")
STARTUP_SECONDS = 240  # the webserver's code server loads the definitions (dagster, dbt, dlt) before it answers
RENDER_MS = 90_000

# every node of the SVG graph (a foreignObject with the asset's or group's name) and every edge (a path with an
# arrow), in the graph's own coordinates
_GRAPH_JS = """() => {
  const nodes = [...document.querySelectorAll('svg foreignObject')].map(fo => {
    const named = fo.querySelector('[data-tooltip]') || fo.querySelector('[title]');  // an asset's, a group's
    return {name: named && (named.getAttribute('data-tooltip') || named.getAttribute('title')),
            x: +fo.getAttribute('x'), y: +fo.getAttribute('y'),
            w: +fo.getAttribute('width'), h: +fo.getAttribute('height')};
  });
  const edges = [...document.querySelectorAll('svg path[marker-end]')].map(path => {
    const n = path.getAttribute('d').match(/-?[0-9.]+/g).map(Number);
    return {x1: n[0], y1: n[1], x2: n[n.length - 2], y2: n[n.length - 1]};
  });
  return {nodes, edges};
}"""


def cheapest_tested_mart(project: dict) -> dg.AssetKey:
    """The mart with data tests (its checks page has rows) that has the fewest models upstream (the cheapest to
    build), by name on a tie. dbt also runs every test that touches a built model, so the mart's build must hold
    every model those tests read (on a fresh warehouse a relationships test to a model not built fails). Skips when
    no mart qualifies."""
    parents, nodes = project["parent_map"], project["nodes"]
    tests = [node for node in nodes.values() if node["resource_type"] == "test"]

    def build(unique_id: str) -> set[str]:  # the mart and every model upstream of it
        seen, todo = {unique_id}, [unique_id]
        while todo:
            for parent in parents.get(todo.pop(), []):
                if parent.startswith("model.") and parent not in seen:
                    seen.add(parent)
                    todo.append(parent)
        return seen

    def self_contained(built: set[str]) -> bool:
        touching = (set(test["depends_on"]["nodes"]) for test in tests)
        return all({n for n in reads if n.startswith("model.")} <= built for reads in touching if reads & built)

    tested = {test.get("attached_node") for test in tests}
    candidates = [
        (len(built), mart["name"], mart)
        for mart in mart_models(project)
        if mart["unique_id"] in tested and self_contained(built := build(mart["unique_id"]))
    ]
    if not candidates:
        pytest.skip("no mart has a data test and a build that holds every model its tests read")
    return WarehouseDbtTranslator().get_asset_key(min(candidates, key=lambda item: item[:2])[-1])


def rendered_edges(page) -> set[tuple[str, str]]:
    """(from, to) names of the nodes each drawn edge joins: it leaves one node's right side, ends at another's
    left side (before the arrow head)."""
    graph = page.evaluate(_GRAPH_JS)
    nodes = [node for node in graph["nodes"] if node["name"]]

    def at(x: float, y: float, side: str) -> str | None:
        found = [
            node
            for node in nodes
            if abs(x - (node["x"] + node["w"] if side == "right" else node["x"])) <= 15
            and node["y"] <= y <= node["y"] + node["h"]
        ]  # the innermost: a lineage view draws asset nodes inside their group's box
        return min(found, key=lambda node: node["w"] * node["h"])["name"] if found else None

    joined = {(at(e["x1"], e["y1"], "right"), at(e["x2"], e["y2"], "left")) for e in graph["edges"]}
    return {pair for pair in joined if None not in pair}


@pytest.fixture(scope="module")
def ui(demo_raw_warehouse, tmp_path_factory) -> Iterator[dict]:
    """A prod environment on a copy of the session's raw warehouse: a mart (`cheapest_tested_mart`) and everything
    dbt builds upstream of it run once through Dagster into a persistent instance, then `dagster-webserver` serves
    that instance."""
    from orchestration.definitions import load_definitions

    mart = cheapest_tested_mart(manifest())
    tmp = tmp_path_factory.mktemp("ui")
    prod = tmp / "prod.duckdb"
    shutil.copy(demo_raw_warehouse, prod)
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_platform_env(monkeypatch, tmp / "data", ELT_ENV="prod", ELT_PROD_DATABASE=str(prod))
        monkeypatch.setenv("DAGSTER_HOME", str(tmp / "data" / "dagster"))  # prepare_dagster_home sets it: undone
        home = prepare_dagster_home(tmp / "data" / "dagster")
        defs = load_definitions()
        graph = defs.resolve_asset_graph()
        selection = dg.AssetSelection.assets(mart).upstream() & DBT
        job = dg.Definitions.merge(
            defs, dg.Definitions(jobs=[dg.define_asset_job("ui_mart", selection=selection)])
        ).resolve_job_def("ui_mart")
        with dg.DagsterInstance.from_config(str(home)) as instance:
            result = job.execute_in_process(instance=instance, raise_on_error=False)
        assert result.success, [str(event.message) for event in result.all_events if event.is_failure][:3]
        checks = {
            evaluation.check_name: evaluation.passed
            for evaluation in result.get_asset_check_evaluations()
            if evaluation.asset_key == mart
        }
        assert checks and all(checks.values()), checks

        port = free_port()
        workspace = tmp / "workspace.yaml"
        workspace.write_text(
            "load_from:\n  - python_module:\n      module_name: orchestration.definitions\n"
            f"      location_name: elt_platform\n      working_directory: {REPO_ROOT}\n"
        )
        webserver = Path(sys.executable).parent / "dagster-webserver"
        log = (tmp / "webserver.log").open("w")
        process = subprocess.Popen(
            [str(webserver), "-h", "127.0.0.1", "-p", str(port), "-w", str(workspace)],
            env={**os.environ},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + STARTUP_SECONDS
            while True:
                assert process.poll() is None, (tmp / "webserver.log").read_text()[-3000:]
                try:
                    urllib.request.urlopen(f"{url}/server_info", timeout=5).read()
                    break
                except OSError:
                    assert time.monotonic() < deadline, f"webserver not up in {STARTUP_SECONDS} s"
                    time.sleep(1)
            yield {
                "mart": mart,
                "url": url,
                "graph": graph,
                "lineage": graph.get(mart).parent_keys,
                "checks": checks,
                "warehouse_database": prod.stem,
                "log": tmp / "webserver.log",
            }
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()


@pytest.fixture
def page(browser, ui):
    context = browser.new_context(viewport={"width": 1800, "height": 1200})
    # the UI's first-visit "join the community" dialog would cover the graph
    context.add_init_script("window.localStorage.setItem('communityNux', '1')")
    page = context.new_page()
    page.set_default_timeout(RENDER_MS)
    yield page
    context.close()


def _upstream_chain(graph, key: dg.AssetKey) -> list[tuple[dg.AssetKey, dg.AssetKey]]:
    """Every (parent, child) edge from the extract assets down to `key`."""
    edges, todo = [], [key]
    while todo:
        child = todo.pop()
        for parent in graph.get(child).parent_keys:
            edges.append((parent, child))
            todo.append(parent)
    return edges


def test_asset_graph_connects_extract_staging_and_marts(page, ui):
    graph, mart = ui["graph"], ui["mart"]
    # one mart's lineage: every asset from its extract asset through staging to it, joined edge by edge
    chain = _upstream_chain(graph, mart)
    names = {key.path[-1] for edge in chain for key in edge}
    assert any(not key.path[0].startswith(("staging", "intermediate", "marts")) for edge in chain for key in edge)
    page.goto(f"{ui['url']}/assets/{'/'.join(mart.path)}?view=lineage&lineageScope=upstream&lineageDepth=10")
    for name in sorted(names):
        page.locator(f'svg foreignObject [data-tooltip="{name}"]').first.wait_for()
    page.wait_for_function(f"() => document.querySelectorAll('svg path[marker-end]').length >= {len(chain)}")
    screenshot(page, "ui_asset_graph")
    drawn = rendered_edges(page)
    expected = {(parent.path[-1], child.path[-1]) for parent, child in chain}
    assert expected <= drawn, f"edges not drawn: {sorted(expected - drawn)}; drawn: {sorted(drawn)}"


def test_mart_page_lists_its_checks_passed_and_names_the_prod_table(page, ui):
    checks, mart = ui["checks"], ui["mart"]
    page.goto(f"{ui['url']}/assets/{'/'.join(mart.path)}?view=checks")
    page.get_by_text(f"Checks ({len(checks)})").wait_for()
    for name in sorted(checks):
        row = page.locator(f'[title="{name}"]').first.locator("xpath=..")
        row.wait_for()
        assert "Succeeded" in row.inner_text(), (name, row.inner_text())
    page.get_by_text("Passed").first.wait_for()  # the selected check's latest evaluation
    screenshot(page, "ui_mart_checks")

    table = f"{ui['warehouse_database']}.{mart.path[0]}.{mart.path[1]}"
    page.goto(f"{ui['url']}/assets/{'/'.join(mart.path)}")
    page.locator(f'[title="{table}"]').first.wait_for()
    assert page.locator('[title^="memory."], [title^="dev."]').count() == 0
    screenshot(page, "ui_mart_page")
