"""The code location (`elt_platform`): every definition dg autoloads from `orchestration/defs/`, plus `elt_all`.

`dg dev`, `dagster dev`, `elt dev`, the code server and `dagster job launch` load `defs` from here
(`[tool.dg.project]` in pyproject.toml). The environment is resolved when the definitions load, from the variables
of the process (orchestration/lib/environment.py); `load_definitions()` loads them afresh, as tests do.
"""

import json
from pathlib import Path

import dagster as dg

from orchestration.lib import dagster_patches
from orchestration.lib.automation import source_freshness_policies, with_source_freshness
from orchestration.lib.dbt import ensure_manifest
from orchestration.lib.dbt_translator import WarehouseDbtTranslator
from orchestration.lib.planning import PartitionedAssets

dagster_patches.apply()  # a run waiting for a pool slot sleeps and hears Ctrl-C (see the module)

ALL_ASSETS_JOB = "elt_all"

elt_all = dg.define_asset_job(
    ALL_ASSETS_JOB,
    selection=dg.AssetSelection.all() - PartitionedAssets(),
    description="Every unpartitioned asset (the shop tables, Hacker News, dbt ...); `elt run` runs it after the "
    "pending partitions of the partitioned assets.",
)


def load_definitions() -> dg.Definitions:
    """Load every slice for the environment the process's variables resolve to.

    Runs execute their steps in the run's own process (`in_process_executor`): every step that writes the warehouse
    waits for the one `duckdb_warehouse` slot anyway, so a process per step would buy no parallelism and cost a
    load of the definitions (dagster, dbt, dlt: about 15 s of CPU) for each step.

    Each extract asset gets the freshness policy of the dbt sources it lands (orchestration/lib/automation.py).
    """
    slices = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
    defs = dg.Definitions.merge(slices, dg.Definitions(jobs=[elt_all], executor=dg.in_process_executor))
    manifest = json.loads(ensure_manifest().read_text())  # prepared by the dbt slice above: only read here
    return with_source_freshness(defs, source_freshness_policies(manifest, WarehouseDbtTranslator().get_asset_key))


@dg.definitions
def defs() -> dg.Definitions:
    return load_definitions()
