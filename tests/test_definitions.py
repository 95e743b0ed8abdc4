"""Lineage: the loaded Dagster definitions form one connected graph from the extract assets to the marts. Nothing
here lists a source: what is expected comes from the definitions and the dbt manifest."""

import json

import dagster as dg
import pytest

from orchestration.definitions import ALL_ASSETS_JOB, load_definitions
from orchestration.lib.asset_keys import raw_table_asset_key
from orchestration.lib.dbt import ensure_manifest
from orchestration.lib.planning import PENDING_PARTITIONS, PartitionedAssets


@pytest.fixture(scope="module")
def defs(module_platform_env) -> dg.Definitions:
    return load_definitions()


@pytest.fixture(scope="module")
def asset_graph(defs):
    return defs.resolve_asset_graph()


@pytest.fixture(scope="module")
def manifest():
    return json.loads(ensure_manifest().read_text())


def extract_keys(asset_graph) -> set[dg.AssetKey]:
    """Every asset not built by dbt that reads no other asset: what the extract slices load (the publish step of
    Write-Audit-Publish is downstream of the models, not an extract)."""
    return {
        key
        for key in asset_graph.materializable_asset_keys
        if "dbt" not in asset_graph.get(key).kinds and not asset_graph.get(key).parent_keys
    }


def source_keys(manifest) -> set[dg.AssetKey]:
    return {raw_table_asset_key(source["schema"], source["identifier"]) for source in manifest["sources"].values()}


def test_every_dbt_source_is_an_extract_asset_and_every_extract_asset_feeds_dbt(asset_graph, manifest):
    sources, extracts = source_keys(manifest), extract_keys(asset_graph)
    assert len(sources) >= 4, "the dbt project declares sources"
    orphans = sources - extracts
    assert not orphans, f"dbt sources with no extract asset: {sorted(k.to_user_string() for k in orphans)}"
    unused = extracts - sources
    assert not unused, f"extract assets no dbt source reads: {sorted(k.to_user_string() for k in unused)}"


def test_graph_has_no_external_or_dangling_keys(asset_graph):
    materializable = set(asset_graph.materializable_asset_keys)
    for key in asset_graph.get_all_asset_keys():
        assert key in materializable, f"{key.to_user_string()} is not materialized by any asset"
        for parent in asset_graph.get(key).parent_keys:
            assert parent in materializable, f"{key.to_user_string()} depends on unknown {parent}"


def test_every_staging_model_hangs_under_the_extract_asset_of_its_source(asset_graph, manifest):
    staging = [
        node
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node["name"].startswith("stg_")
    ]
    assert staging
    for model in staging:
        parents = model["depends_on"]["nodes"]
        sources = [manifest["sources"][unique_id] for unique_id in parents if unique_id.startswith("source.")]
        assert sources, f"{model['name']} reads no source"
        parents = asset_graph.get(dg.AssetKey(["staging", model["name"]])).parent_keys
        for source in sources:
            expected = raw_table_asset_key(source["schema"], source["identifier"])
            assert expected in parents, f"{model['name']} should depend on {expected.to_user_string()}: {parents}"


def test_source_tests_are_asset_checks_on_extract_assets(asset_graph, manifest):
    checked = {check.asset_key for check in asset_graph.asset_check_keys}
    tested_sources = {
        raw_table_asset_key(source["schema"], source["identifier"])
        for node in manifest["nodes"].values()
        if node["resource_type"] == "test"
        for unique_id in node["depends_on"]["nodes"]
        if (source := manifest["sources"].get(unique_id))
    }
    assert tested_sources
    for key in tested_sources:
        assert key in checked, f"dbt source tests should report as checks on {key.to_user_string()}"


def test_partitioned_assets_name_how_elt_run_finds_their_pending_partitions(asset_graph):
    partitioned = PartitionedAssets().resolve(asset_graph)
    assert partitioned, "some extract assets are partitioned"
    for key in partitioned:
        assert PENDING_PARTITIONS in asset_graph.get(key).metadata, key.to_user_string()


def test_elt_all_runs_every_unpartitioned_asset_and_the_checks_its_ops_run(defs, asset_graph):
    job = defs.resolve_job_def(ALL_ASSETS_JOB)
    selected = job.asset_layer.selected_asset_keys
    partitioned = PartitionedAssets().resolve(asset_graph)
    assert selected == set(asset_graph.materializable_asset_keys) - partitioned
    # dbt's source tests on a partitioned asset run with `dbt build`, so they belong to elt_all; a partitioned
    # asset's own checks (the files' integrity check) run with its load
    checks = (dg.AssetSelection.all() - PartitionedAssets()).resolve_checks(asset_graph)
    for check in asset_graph.asset_check_keys:
        runs_with_a_partitioned_load = asset_graph.assets_def_for_key(check).partitions_def is not None
        assert (check in checks) != runs_with_a_partitioned_load, check.to_user_string()
    assert any(check.asset_key in partitioned for check in checks), "dbt tests sources that are partitioned"


def test_one_code_location_name_everywhere():
    import tomllib

    from orchestration.lib.environment import REPO_ROOT

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]
    assert project["dg"]["project"]["code_location_name"] == project["dagster"]["code_location_name"]
    assert project["dg"]["project"]["code_location_target_module"] == project["dagster"]["module_name"]


def test_every_extract_asset_whose_sources_declare_freshness_has_that_freshness_policy(asset_graph, manifest):
    """The UI shows a load that stopped as stale: an extract asset's policy is the tightest dbt `freshness:` of the
    sources it lands (a dlt child table with `freshness: null` does not take the parent's away)."""
    periods = {"minute": 60, "hour": 3600, "day": 86400}
    expected: dict[dg.AssetKey, int] = {}
    for source in manifest["sources"].values():
        freshness = source.get("freshness") or {}
        windows = [
            threshold["count"] * periods[threshold["period"]]
            for threshold in (freshness.get("error_after"), freshness.get("warn_after"))
            if threshold and threshold.get("count")
        ]
        if windows:
            key = raw_table_asset_key(source["schema"], source["identifier"])
            # the fail window: error_after where set, else warn_after; across a key's tables the tightest
            fail = windows[0] if (freshness.get("error_after") or {}).get("count") else windows[-1]
            expected[key] = min(expected.get(key, fail), fail)
    assert len(expected) >= 4, "the dbt sources declare freshness"
    for key in extract_keys(asset_graph):
        policy = asset_graph.get(key).freshness_policy
        if key not in expected:
            assert policy is None, f"{key.to_user_string()}: a policy no dbt source declares"
            continue
        assert policy is not None, f"{key.to_user_string()} has no freshness policy"
        assert policy.fail_window.to_timedelta().total_seconds() == expected[key], key.to_user_string()


def test_dbt_resource_knows_the_installed_dbt_version_without_starting_dbt(monkeypatch):
    # dagster-dbt runs `dbt --version` once per resource, that is once per run (about 4 s of dbt's imports); the
    # platform's resource reads the installed dbt-core's version instead, and it is the version `dbt` reports
    import subprocess

    from orchestration.lib.dbt import WarehouseDbtCliResource, _dbt_executable

    reported = subprocess.run([_dbt_executable(), "--version"], capture_output=True, text=True, check=True).stdout

    def refuse(*args, **kwargs):
        raise AssertionError(f"dbt was started to learn its version: {args}")

    monkeypatch.setattr("dagster_dbt.core.resource.check_output", refuse)
    resource = WarehouseDbtCliResource(project_dir="dbt_project", dbt_executable=_dbt_executable())
    assert f"installed: {resource._cli_version}" in reported
