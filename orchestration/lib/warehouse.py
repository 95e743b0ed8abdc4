"""The warehouse every extractor and dbt write: a DuckDB file or a MotherDuck database, from the environment."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import dagster as dg
import dlt
import duckdb

from extract.destination import load_memory_limit, warehouse_destination
from orchestration.lib import motherduck
from orchestration.lib.environment import Environment, open_for_write


class WarehouseResource(dg.ConfigurableResource):
    """Where this process writes: the resolved `Environment`, carried whole (`.environment` gives it back equal,
    branch id and reasons included). Built by `from_environment(resolve())`; tests build it on a temp file."""

    env_name: str
    location: str  # absolute DuckDB file path or `md:<database>`
    data_dir: str
    prod_location: str | None = None
    branch_id: str | None = None
    reasons: list[str] = []

    @classmethod
    def from_environment(cls, env: Environment) -> WarehouseResource:
        return cls(
            env_name=env.name,
            location=env.warehouse,
            data_dir=str(env.data_dir),
            prod_location=env.prod_warehouse,
            branch_id=env.branch_id,
            reasons=list(env.reasons),
        )

    @property
    def environment(self) -> Environment:
        return Environment(
            name=self.env_name,
            warehouse=self.location,
            data_dir=Path(self.data_dir),
            branch_id=self.branch_id,
            prod_warehouse=self.prod_location,
            reasons=tuple(self.reasons),
        )

    @property
    def is_motherduck(self) -> bool:
        return motherduck.is_motherduck(self.location)

    def checked_location(self) -> str:
        """The location, after the prod-write guard; creates the parent folder of a local file."""
        location = open_for_write(self.environment, self.location)
        if not self.is_motherduck:
            Path(location).parent.mkdir(parents=True, exist_ok=True)
        return location

    def dlt_destination(self):
        """dlt's destination for this warehouse (see extract/destination.py), after the prod-write guard."""
        return warehouse_destination(self.checked_location(), motherduck=self.is_motherduck)

    def dlt_pipeline(self, pipeline_name: str, dataset_name: str) -> dlt.Pipeline:
        """A dlt pipeline into this warehouse, with its local state kept per environment."""
        return dlt.pipeline(
            pipeline_name=pipeline_name,
            destination=self.dlt_destination(),
            dataset_name=dataset_name,
            pipelines_dir=str(self.environment.dlt_pipelines_dir),
        )

    def connect(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        """A connection for the platform's own statements (audit slots, publish), its DuckDB bounded like dlt's
        loads (`load_memory_limit()`), which may share the same database in this process: the limit is SET on the
        connection, because connecting with another config than an open connection's fails."""
        location = self.location if read_only else self.checked_location()
        con = duckdb.connect(location, read_only=read_only)
        if not self.is_motherduck:
            limit = load_memory_limit().replace("'", "''")
            con.execute(f"SET memory_limit = '{limit}'")
        return con


def drop_dlt_staging(pipeline: dlt.Pipeline) -> bool:
    """Drop the pipeline's staging dataset (`<dataset>_staging`), through dlt's own SQL client, after a successful
    load. dlt stages a merge there and, even with `truncate_staging_dataset`, leaves the schema and its tables in the
    warehouse; the next load creates it again (a few DDL statements). Returns whether there was one to drop."""
    with pipeline.sql_client() as client, client.with_staging_dataset():
        if not client.has_dataset():
            return False
        client.drop_dataset()
        return True


def table_metadata(
    query: Callable[[str], Sequence[tuple]], table: str, *, name: str, motherduck: bool
) -> dict[str, dg.MetadataValue]:
    """Dagster's standard table metadata (name, rows now, storage, columns) for a warehouse table, read through
    `query`: a DuckDB connection's or a dlt sql client's, whichever connection the caller already has open."""
    [(row_count,)] = query(f"select count(*) from {table}")
    columns = query(f"describe {table}")
    return {
        "dagster/table_name": dg.MetadataValue.text(name),
        "dagster/row_count": dg.MetadataValue.int(row_count),
        "dagster/storage_kind": dg.MetadataValue.text("motherduck" if motherduck else "duckdb"),
        "dagster/column_schema": dg.MetadataValue.table_schema(
            dg.TableSchema(columns=[dg.TableColumn(name=column, type=kind) for column, kind, *_ in columns])
        ),
    }
