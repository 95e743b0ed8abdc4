"""When the dbt models run: on their own, when what they read has new data (declarative automation), not on a cron.

Every model carries `model_automation_condition()` (set by the translator, orchestration/lib/automation.py); the
automation condition sensor evaluates it and launches one run of exactly the models it requests, which dagster-dbt
runs as `dbt build --select` of that selection. The `dbt_build` job (every model and test, defined beside the assets)
stays for a full build by hand (`dagster job launch -j dbt_build`); `elt run` builds everything once, as before.
"""

import dagster as dg

from orchestration.lib.automation import automation_sensor
from orchestration.lib.environment import resolve


@dg.definitions
def schedules() -> dg.Definitions:
    """The automation sensor (running by default in prod only)."""
    return dg.Definitions(sensors=[automation_sensor(resolve())])
