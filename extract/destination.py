"""The dlt destination every dlt extractor loads into: a DuckDB file or a MotherDuck database (`md:<name>`).

No Dagster here: the orchestration's warehouse resource and a bare script (the benchmark's reference runs) build
the destination the same way. The caller passes a location it has already checked against the prod-write guard.
"""

import dlt

# - SQL jobs in transactions: dlt runs a merge's DELETE and INSERT in autocommit on DuckDB unless told (readers
#   would see a re-loaded partition's rows gone);
# - one load job per table at a time: DuckDB serializes the writes anyway, and parallel INSERT jobs only add memory
#   (10M CSV rows in 100 files: 1.8 GiB peak in parallel, 0.25 GiB table-sequential, about the same time).
DESTINATION_CAPABILITIES = {"supports_transactions": True, "loader_parallelism_strategy": "table-sequential"}


def warehouse_destination(location: str, motherduck: bool):
    """dlt's DuckDB destination for a file `location`, or its MotherDuck destination (`md:<database>`, the caller
    says which), set for a single-writer database."""
    if motherduck:
        return dlt.destinations.motherduck(credentials=location, **DESTINATION_CAPABILITIES)
    return dlt.destinations.duckdb(credentials=location, **DESTINATION_CAPABILITIES)
