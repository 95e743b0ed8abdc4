"""The dlt destination every dlt extractor loads into: a DuckDB file or a MotherDuck database (`md:<name>`).

No Dagster here: the orchestration's warehouse resource and a bare script (the benchmark's reference runs) build
the destination the same way. The caller passes a location it has already checked against the prod-write guard.
"""

import os

import dlt
from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials

# - SQL jobs in transactions: dlt runs a merge's DELETE and INSERT in autocommit on DuckDB unless told (readers
#   would see a re-loaded partition's rows gone);
# - one load job per table at a time: DuckDB serializes the writes anyway, and parallel INSERT jobs only add memory
#   (10M CSV rows in 100 files: 1.8 GiB peak in parallel, 0.25 GiB table-sequential, about the same time).
DESTINATION_CAPABILITIES = {"supports_transactions": True, "loader_parallelism_strategy": "table-sequential"}
# the buffer pool of the DuckDB dlt loads through (a load is INSERTs of staged files and a merge's DELETE + INSERT):
# past it DuckDB spills to `<warehouse>.tmp`; by default DuckDB would take 80% of the machine's memory
LOAD_MEMORY_LIMIT = "512MB"
# raw rows carry their own order (`_source_row`, load ids, keys); not keeping the insertion order lets DuckDB write
# a large INSERT's row groups in parallel, compressed, so nothing is left for the checkpoint to rewrite (10M CSV
# rows in 10 jobs: 17 s of loading, then 0.1 s of checkpoint instead of 9-13 s, when dlt closes each job's
# connection and DuckDB checkpoints)
LOAD_SETTINGS = {"preserve_insertion_order": False}


def load_memory_limit() -> str:
    return os.environ.get("ELT_DLT_DUCKDB_MEMORY_LIMIT", LOAD_MEMORY_LIMIT)


def warehouse_destination(location: str, motherduck: bool):
    """dlt's DuckDB destination for a file `location`, or its MotherDuck destination (`md:<database>`, the caller
    says which), set for a single-writer database, its DuckDB bounded to `load_memory_limit()` and not keeping
    insertion order (`LOAD_SETTINGS`)."""
    if motherduck:
        return dlt.destinations.motherduck(credentials=location, **DESTINATION_CAPABILITIES)
    settings = {"memory_limit": load_memory_limit(), **LOAD_SETTINGS}
    credentials = DuckDbCredentials(location, global_config=settings)
    return dlt.destinations.duckdb(credentials=credentials, **DESTINATION_CAPABILITIES)
