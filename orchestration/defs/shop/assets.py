"""The shop slice: PostgreSQL `data.*` -> Sling -> `raw_shop.*` in the warehouse."""
# no `from __future__ import annotations`: Dagster reads the `context` annotation at definition time

import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import dagster as dg
import yaml
from dagster_sling import DagsterSlingTranslator, SlingConnectionResource, SlingResource, sling_assets
from dagster_sling import resources as dagster_sling_resources

from extract.shop.connection import describe, scrub
from extract.shop.replicate import (
    REPLICATION_CONFIG,
    StreamPlan,
    failed_streams,
    rows_loaded,
    sling_environment,
    stream_plans,
    unchanged_streams,
)
from extract.shop.snapshot import ShopSnapshotError, raw_tables_present, snapshot_shop
from extract.shop.stall import SlingStalled, retry_once_on_stall
from extract.tooling import install_duckdb_extensions, scoped_environ
from orchestration.defs.shop.resources import ShopPostgresResource
from orchestration.lib import motherduck
from orchestration.lib.asset_keys import WAREHOUSE_POOL, table_asset_key
from orchestration.lib.warehouse import WarehouseResource, table_metadata

RAW_SCHEMA = "raw_shop"  # the schema in the replication's `object: raw_shop.{stream_table}`


class _SubsetAdviceFilter(logging.Filter):
    """dagster-sling warns on every run that has run config (even a logger's level) but no `context_streams`, and
    would then replicate every stream. This asset subsets the replication itself (`_replication_for`, from the
    selected keys), so that advice never applies: keep it off the run's log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "would provide a `context_streams` config" not in record.getMessage()


dagster_sling_resources.logger.addFilter(_SubsetAdviceFilter())


class ShopSlingTranslator(DagsterSlingTranslator):
    """Key each stream by where it lands (`raw_shop/<table>`), in group `shop`."""

    def get_asset_spec(self, stream_definition: Mapping[str, Any]) -> dg.AssetSpec:
        table = stream_definition["name"].split(".")[-1]
        plan = stream_plans()[table]
        how = (
            f"incrementally (rows with `{plan.update_key}` at or after the newest loaded, merged on "
            f"`{', '.join(plan.primary_key)}`)"
            if plan.mode == "incremental"
            else f"in full each run (`{plan.mode}`)"
        )
        return (
            super()
            .get_asset_spec(stream_definition)
            .replace_attributes(
                key=table_asset_key(RAW_SCHEMA, table),
                deps=[],  # the PostgreSQL tables are not assets of this platform
                group_name="shop",
                description=f"`{stream_definition['name']}` from the shop PostgreSQL, copied by Sling {how} "
                f"into `{RAW_SCHEMA}.{table}` with a `_sling_loaded_at` load timestamp.",
            )
            .merge_attributes(kinds={"postgres", "duckdb"})
        )


def _warehouse_connection(location: str) -> SlingConnectionResource:
    """Sling's WAREHOUSE: a local DuckDB file, or a MotherDuck database (token from MOTHERDUCK_TOKEN)."""
    if motherduck.is_motherduck(location):
        return SlingConnectionResource(
            name="WAREHOUSE",
            type="motherduck",
            database=motherduck.database_name(location),
            motherduck_token=os.environ.get("MOTHERDUCK_TOKEN"),
        )
    return SlingConnectionResource(name="WAREHOUSE", type="duckdb", instance=location)


class ShopReplicationConfig(dg.Config):
    """Run config: `full_reload` reads every selected table in full once, e.g. after rows were changed behind the
    `updated_at` trigger's back (a bulk fix with the trigger disabled): an incremental run only sees rows at or after
    the high-water mark. Into a local warehouse through the bulk snapshot, into MotherDuck through Sling
    (`truncate`); either way the table and its columns stay."""

    full_reload: bool = False


def _replication_for(plans: list[StreamPlan]) -> dict[str, Any]:
    """replication.yaml limited to the selected streams, each in the plan's mode."""
    replication = yaml.safe_load(REPLICATION_CONFIG.read_text())
    streams = {plan.stream: {**(replication["streams"][plan.stream] or {}), "mode": plan.mode} for plan in plans}
    return {**replication, "streams": streams}


def _high_water_marks(warehouse: WarehouseResource, plans: list[StreamPlan]) -> dict[str, Any]:
    """The newest update_key value already in each incremental raw table: where this run's read starts."""
    incremental = [plan for plan in plans if plan.mode == "incremental" and plan.update_key]
    if not incremental or (not warehouse.is_motherduck and not Path(warehouse.location).is_file()):
        return {}
    marks = {}
    with warehouse.connect(read_only=True) as con:  # closed before Sling's DuckDB CLI opens the file
        for plan in incremental:
            schema, table = plan.table.split(".")
            exists = con.execute(
                "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
                [schema, table],
            ).fetchone()[0]
            if exists:
                marks[plan.table] = con.sql(f"select max({plan.update_key}) from {plan.table}").fetchone()[0]
    return marks


def _load_window(plan: StreamPlan, high_water_mark: Any) -> str:
    """How this run read the stream, in words a user reads in the UI."""
    if plan.mode != "incremental":
        return f"{plan.mode}: every row"
    if high_water_mark is None:
        return f"incremental, first load: every row (merged on {', '.join(plan.primary_key)})"
    return (
        f"incremental: {plan.update_key} >= {high_water_mark} "
        f"(the table's newest before this run), merged on {', '.join(plan.primary_key)}"
    )


def _unchanged_streams(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    url: str,
    plans: list[StreamPlan],
    high_water_marks: Mapping[str, Any],
) -> set[str]:
    """The incremental streams with nothing new past their high-water mark (`unchanged_streams`): Sling does not
    start for them. A check that fails only means Sling runs them all."""
    try:
        with warehouse.connect(read_only=True) as con:  # closed before Sling's DuckDB CLI opens the file
            unchanged = unchanged_streams(
                url, plans, high_water_marks, lambda sql, params: con.execute(sql, params).fetchall()
            )
    except Exception as error:
        context.log.warning(f"could not check the shop for new rows ({scrub(str(error), url)}); Sling reads them all")
        return set()
    if unchanged:
        context.log.info(f"nothing new past the high-water mark of {', '.join(sorted(unchanged))}: Sling skips them")
    return unchanged


class PlannedSlingResource(SlingResource):
    """dagster-sling's resource, running exactly the streams of the replication config it is given: by default it
    replaces them with every stream the step selected, which would re-copy the tables the bulk snapshot just
    loaded or that have nothing new (and yield their materializations twice)."""

    def _get_replication_streams_for_context(self, context) -> dict:
        return {}


def _replicate(
    context: dg.AssetExecutionContext, sling: SlingResource, plans: list[StreamPlan], sling_dir: Path
) -> list[Any]:
    """Sling's events for `plans`, under the stall guard: a Sling that hangs (seen with Sling 1.4.11 on a loaded
    machine) is stopped and run once more; its killed attempt committed nothing. A second stall fails the step."""

    def attempt() -> list[Any]:
        with scoped_environ(sling_environment(sling_dir)):  # memory bounds, Sling's own home, its owner
            return list(
                sling.replicate(
                    context=context,
                    replication_config=_replication_for(plans),
                    dagster_sling_translator=ShopSlingTranslator(),
                )
            )

    try:
        return retry_once_on_stall(
            attempt, on_stall=lambda stall: context.log.warning(f"{stall}; running Sling once more")
        )
    except SlingStalled as stall:
        raise SlingStalled(f"{stall} (twice in this step)") from None


@sling_assets(
    replication_config=REPLICATION_CONFIG,
    dagster_sling_translator=ShopSlingTranslator(),
    name="shop_sling",
    pool=WAREHOUSE_POOL,
)
def shop_assets(
    context: dg.AssetExecutionContext,
    config: ShopReplicationConfig,
    shop_postgres: ShopPostgresResource,
    warehouse: WarehouseResource,
) -> Iterator[Any]:
    """Replicate customers, products and orders (incremental on updated_at, merged on their ids) and the deletion
    tombstones; report per table the rows this run loaded, the rows in the table, how it was read and its columns."""
    location = warehouse.checked_location()
    if not warehouse.is_motherduck:
        install_duckdb_extensions()  # Sling's DuckDB CLI reads rows over http: httpfs, from its wheel
    plans = stream_plans()
    if config.full_reload and warehouse.is_motherduck:  # no bulk snapshot into MotherDuck: Sling reads in full
        plans = {table: replace(plan, mode="truncate") for table, plan in plans.items()}
    selected = [plans[key.path[-1]] for key in context.selected_asset_keys]
    high_water_marks = _high_water_marks(warehouse, selected)
    # first loads (no raw table yet) and full reloads of a local warehouse go through the bulk snapshot; Sling then
    # continues from its high-water mark (extract/shop/snapshot.py)
    bulk: list[StreamPlan] = []
    if not warehouse.is_motherduck:
        present = raw_tables_present(Path(location), selected)
        bulk = [plan for plan in selected if config.full_reload or plan.table not in present]
    with shop_postgres.session(Path(warehouse.data_dir) / "demo_postgres") as url:
        source = describe(url)
        context.log.info(f"replicating {', '.join(plan.stream for plan in selected)} from {source} into {location}")
        snapshot: dict[str, int] = {}
        if bulk:
            context.log.info(f"bulk snapshot (DuckDB postgres extension) of {', '.join(p.stream for p in bulk)}")
            try:
                snapshot = snapshot_shop(url, Path(location), [plan.table.split(".")[-1] for plan in bulk])
            except ShopSnapshotError as error:
                raise dg.Failure(description=str(error)) from None
        # Sling runs the streams the snapshot did not copy (a snapshot already is the table's full, current state:
        # Sling's next run continues from its high-water mark)
        rest = [plan for plan in selected if plan.table not in snapshot]
        # an incremental stream with nothing past its high-water mark needs no Sling (~5 s of fixed cost a run)
        unchanged = _unchanged_streams(context, warehouse, url, rest, high_water_marks) if rest else set()
        rest = [plan for plan in rest if plan.table not in unchanged]
        events: list[Any] = []
        sling_log = ""
        if rest:
            sling = PlannedSlingResource(
                connections=[
                    SlingConnectionResource(name="SHOP", type="postgres", connection_string=url),
                    _warehouse_connection(location),
                ]
            )
            try:  # materialize the iterator here so Sling is done (and its DuckDB CLI gone) before we read back
                events = _replicate(context, sling, rest, Path(warehouse.data_dir) / "sling")
            except Exception as error:  # Sling's failure text is its whole log: keep it, minus the password
                if isinstance(error, SlingStalled):
                    raise dg.Failure(description=f"Sling replication from {source}: {error}") from None
                sling_output = scrub(str(error), url)
                # per failed stream what went wrong (a value that does not cast: its table, column and value)
                failures = failed_streams(sling_output)
                what = "; ".join(failures.values()) or "a table whose stream failed keeps its previous content"
                raise dg.Failure(
                    description=f"Sling replication from the shop PostgreSQL at {source} failed: {what}",
                    metadata={
                        "sling_output": dg.MetadataValue.text(sling_output[-8000:]),
                        "failed_streams": dg.MetadataValue.json(sorted(failures)),
                    },
                ) from None
            sling_log = scrub("\n".join(sling.stream_raw_logs()), url)  # dagster-sling logs it at debug level
    loaded = rows_loaded(sling_log)
    # the tables Sling did not copy this run: the snapshot's, and those with nothing new past their mark
    without_sling = [
        dg.MaterializeResult(asset_key=table_asset_key(RAW_SCHEMA, table.split(".")[-1]))
        for table in [*snapshot, *sorted(unchanged)]
    ]
    with warehouse.connect(read_only=True) as con:  # counts in-process: `sling conns exec` costs ~1 s a table
        for event in [*without_sling, *events]:
            plan = plans[event.asset_key.path[-1]]
            high_water_mark = high_water_marks.get(plan.table)
            metadata: dict[str, Any] = {
                **table_metadata(
                    lambda sql: con.sql(sql).fetchall(), plan.table, name=plan.table, motherduck=warehouse.is_motherduck
                ),
                # the snapshot's rows, else Sling's count for this run
                "rows_loaded": dg.MetadataValue.int(snapshot.get(plan.table, loaded.get(plan.table, 0))),
                "mode": plan.mode,
                "window": (
                    "bulk snapshot (DuckDB postgres extension): every row; Sling's next run continues from it"
                    if plan.table in snapshot
                    else f"nothing in PostgreSQL past {high_water_mark} (the table's newest): Sling did not start"
                    if plan.table in unchanged
                    else _load_window(plan, high_water_mark)
                ),
                "source": f"{plan.stream} at {source}",
            }
            if plan.mode == "incremental":
                metadata["incremental_from"] = dg.MetadataValue.text(str(high_water_mark or "beginning"))
            if plan.mode == "incremental" and plan.update_key and high_water_mark is not None:
                # Sling's `>=` re-reads the rows at the high-water mark: what is new is what lies past it (the
                # automation wakes the models downstream on this count, orchestration/lib/automation.py)
                (changed,) = con.execute(
                    f"select count(*) from {plan.table} where {plan.update_key} > ?", [high_water_mark]
                ).fetchone()
                metadata["rows_changed"] = dg.MetadataValue.int(changed)
            yield event._replace(metadata={**(event.metadata or {}), **metadata})
