"""Lineage: the loaded Dagster definitions form one connected graph from the extract assets to the marts."""

import json

import dagster as dg
import pytest

from orchestration.dbt.project import ensure_manifest
from orchestration.definitions import build_definitions
from orchestration.environment import resolve, source_settings
from orchestration.files.assets import files_assets
from orchestration.lib.asset_keys import raw_table_asset_key
from orchestration.nasa.assets import nasa_assets
from orchestration.shop.assets import shop_assets


@pytest.fixture(scope="module")
def asset_graph(tmp_path_factory):
    env = resolve({"ELT_DATA_DIR": str(tmp_path_factory.mktemp("data"))})
    defs = build_definitions(env, source_settings({}))
    return defs.resolve_asset_graph()


@pytest.fixture(scope="module")
def manifest():
    return json.loads(ensure_manifest().read_text())


def test_every_dbt_source_is_an_extract_asset(asset_graph, manifest):
    extract_keys = {key for assets in (files_assets, nasa_assets, shop_assets) for key in assets.keys}
    source_keys = {
        raw_table_asset_key(source["schema"], source["identifier"]) for source in manifest["sources"].values()
    }
    assert source_keys, "the dbt project declares sources"
    orphans = source_keys - extract_keys
    assert not orphans, f"dbt sources with no extract asset: {sorted(k.to_user_string() for k in orphans)}"


def test_graph_has_no_external_or_dangling_keys(asset_graph):
    materializable = set(asset_graph.materializable_asset_keys)
    for key in asset_graph.get_all_asset_keys():
        assert key in materializable, f"{key.to_user_string()} is not materialized by any asset"
        for parent in asset_graph.get(key).parent_keys:
            assert parent in materializable, f"{key.to_user_string()} depends on unknown {parent}"


def test_staging_models_hang_under_extract_assets(asset_graph):
    expected = {
        ("staging", "stg_files__share_prices"): ("raw_files", "share_prices"),
        ("staging", "stg_shop__orders"): ("raw_shop", "orders"),
        ("staging", "stg_shop__customers"): ("raw_shop", "customers"),
        ("staging", "stg_nasa__asteroids"): ("raw_nasa", "asteroids"),
        ("staging", "stg_nasa__close_approaches"): ("raw_nasa", "asteroids"),
    }
    for model, raw in expected.items():
        parents = asset_graph.get(dg.AssetKey(list(model))).parent_keys
        assert dg.AssetKey(list(raw)) in parents, f"{model} should depend on {raw}, has {parents}"


def test_source_tests_are_asset_checks_on_extract_assets(asset_graph):
    checked = {check.asset_key for check in asset_graph.asset_check_keys}
    for assets in (files_assets, nasa_assets, shop_assets):
        for key in assets.keys:
            assert key in checked, f"dbt source tests should report as checks on {key.to_user_string()}"
