"""When the dbt models run: on their own, when what they read has new data (declarative automation), not on a cron.

Every model carries `model_automation_condition()` (set by the translator, orchestration/lib/automation.py); the
automation condition sensor evaluates it and launches one run of exactly the models it requests, which dagster-dbt
runs as `dbt build --select` of that selection. The `dbt_build` job (every model and test) stays for a full build
by hand (`dagster job launch -j dbt_build`); `elt run` builds everything once, as before.
"""

import dagster as dg

from orchestration.defs.dbt.assets import dbt_models
from orchestration.lib.automation import automation_sensor
from orchestration.lib.environment import resolve

TRANSFORM_JOB = "dbt_build"

dbt_build = dg.define_asset_job(
    TRANSFORM_JOB,
    # and the dbt source tests: asset checks on the extract assets (raw_*), which the load jobs leave to this one
    selection=dg.AssetSelection.assets(dbt_models) | dg.AssetSelection.checks(*dbt_models.check_keys),
    description="`dbt build` of every model and test, on what the extract assets loaded (by hand; the models "
    "otherwise run when their inputs change).",
)


@dg.definitions
def schedules() -> dg.Definitions:
    """The full-build job and the automation sensor (running by default in prod only)."""
    return dg.Definitions(jobs=[dbt_build], sensors=[automation_sensor(resolve())])
