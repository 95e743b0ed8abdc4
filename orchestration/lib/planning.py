"""How a whole-pipeline run (`elt run`) finds what is new, without knowing any slice.

A partitioned asset names, in its metadata, the function that lists its pending partitions (`elt/pending_partitions`:
`module:function`, shown in the UI as what `elt run` loads); the planner (orchestration/pipeline.py) calls it with
a `PlanContext`. A partitioned asset without one gets its partitions that were never materialized.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

from orchestration.lib.environment import Environment

PENDING_PARTITIONS = "elt/pending_partitions"


@dataclass(frozen=True)
class PlanContext:
    instance: dg.DagsterInstance
    env: Environment
    resources: Mapping[str, Any]  # the loaded definitions' resources, by key
    asset_key: dg.AssetKey
    partitions_def: dg.PartitionsDefinition


PendingPartitions = Callable[[PlanContext], Sequence[str]]


def pending_partitions_metadata(function: PendingPartitions) -> dict[str, str]:
    """Asset metadata that names `function` as the asset's pending-partitions finder."""
    return {PENDING_PARTITIONS: f"{function.__module__}:{function.__qualname__}"}


def never_materialized(context: PlanContext) -> list[str]:
    """The default: every partition that has no materialization yet."""
    done = context.instance.get_materialized_partitions(context.asset_key)
    keys = context.partitions_def.get_partition_keys(dynamic_partitions_store=context.instance)
    return [key for key in keys if key not in done]


def pending_partitions_finder(metadata: Mapping[str, Any]) -> PendingPartitions:
    reference = metadata.get(PENDING_PARTITIONS)
    if reference is None:
        return never_materialized
    module, _, name = str(getattr(reference, "value", reference)).partition(":")
    return getattr(importlib.import_module(module), name)


class PartitionedAssets(dg.AssetSelection):
    """Every materializable asset with a partitions definition (what `elt run` plans partition by partition), and
    the checks their own ops run. Checks on them that another op runs (dbt's source tests, run by `dbt build`) are
    not part of it: `all() - PartitionedAssets()` keeps them with the op that yields them."""

    def resolve_inner(self, asset_graph, allow_missing: bool) -> set[dg.AssetKey]:
        return {key for key in asset_graph.materializable_asset_keys if asset_graph.get(key).partitions_def}

    def resolve_checks_inner(self, asset_graph, allow_missing: bool) -> set[dg.AssetCheckKey]:
        partitioned = self.resolve(asset_graph)
        return {
            check
            for check in asset_graph.asset_check_keys
            if check.asset_key in partitioned and set(asset_graph.assets_def_for_key(check).keys) & partitioned
        }

    def to_selection_str(self) -> str:
        return "partitioned assets"
