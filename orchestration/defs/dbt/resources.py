"""dbt, bound to the resolved environment: its target and the variables profiles.yml reads."""

import dagster as dg

from orchestration.lib.dbt import WarehouseDbtCliResource
from orchestration.lib.environment import resolve


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"dbt": WarehouseDbtCliResource.for_environment(resolve())})
