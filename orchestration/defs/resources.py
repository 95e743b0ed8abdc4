"""The resources every slice shares: the warehouse of the resolved environment and dagster-dlt's runner."""

import dagster as dg
from dagster_dlt import DagsterDltResource

from orchestration.lib.environment import resolve
from orchestration.lib.warehouse import WarehouseResource


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={"warehouse": WarehouseResource.from_environment(resolve()), "dlt": DagsterDltResource()}
    )
