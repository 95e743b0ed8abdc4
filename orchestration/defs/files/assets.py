"""The CSV drops slice: share-price files -> dlt -> `raw_files.share_prices`, one partition per file.

A run loads every file in `context.partition_keys` in one dlt load (a backfill or `elt run` over many files is one
run). Each file is checked before any of its rows are loaded; a failing file is not loaded and its partition fails,
the other files load and get their own materialization. The check's result (failing rows, a sample) is the blocking
asset check `file_integrity`.
"""
# no `from __future__ import annotations`: Dagster reads the `context` annotation at definition time

from collections.abc import Iterator

import dagster as dg
from dagster_dlt.translator import DltResourceTranslatorData

from extract.files.drops import DropFile, list_drops
from extract.files.integrity import InvalidDropFile
from extract.files.source import LoadLog, share_price_files
from orchestration.defs.files.partitions import (
    SHARE_PRICES_KEY,
    fingerprint_metadata,
    pending_files,
    removed_drop_files,
    share_price_partitions,
)
from orchestration.defs.files.resources import ShareDropsResource
from orchestration.lib.asset_keys import WAREHOUSE_POOL
from orchestration.lib.dlt_translator import RawTableDltTranslator, landed_table_metadata
from orchestration.lib.planning import pending_partitions_metadata
from orchestration.lib.warehouse import WarehouseResource, drop_dlt_staging

INTEGRITY_CHECK = "file_integrity"
PIPELINE_NAME, DATASET = "files_share_prices", "raw_files"


def _share_prices_spec() -> dg.AssetSpec:
    """The spec the shared dlt translator gives the resource (key `raw_files/share_prices`), made skippable: the
    asset reports one materialization per loaded file instead of one for the whole run."""
    resource = share_price_files().resources["share_prices"]
    spec = RawTableDltTranslator(DATASET, group_name="files").get_asset_spec(
        DltResourceTranslatorData(resource=resource, pipeline=None)
    )
    assert spec.key == SHARE_PRICES_KEY, spec.key
    return spec.replace_attributes(
        skippable=True,
        metadata={**spec.metadata, **pending_partitions_metadata(pending_files)},
        description="Share-price CSV drops, one partition per file, loaded by dlt with values kept as written "
        "plus `_source_file`, `_source_row`, `_loaded_at`. Re-loading a file replaces exactly its rows, atomically.",
    )


def _fingerprint(drop: DropFile) -> str | None:
    """The file's fingerprint; None when it was deleted since the listing (the load then refuses it, naming it)."""
    try:
        return drop.fingerprint()
    except FileNotFoundError:
        return None


def _sample_markdown(invalid: dict[str, InvalidDropFile]) -> str:
    lines = ["| file | row | line | column | value | problem |", "|---|---|---|---|---|---|"]
    for name, error in invalid.items():
        for problem in error.sample:
            if problem.row is None:
                row, line = ("header", "1") if problem.column else ("file", "")
            else:
                row, line = str(problem.row), str(problem.row + 1)
            value = "" if problem.value is None else f"`{problem.value}`"
            lines.append(f"| {name} | {row} | {line} | {problem.column or ''} | {value} | {problem.problem} |")
    return "\n".join(lines)


def integrity_result(checked: list[str], invalid: dict[str, InvalidDropFile]) -> dg.AssetCheckResult:
    """The check's verdict over the files of one run, with the failing rows' count and a sample."""
    return dg.AssetCheckResult(
        check_name=INTEGRITY_CHECK,
        passed=not invalid,
        description=None if not invalid else "; ".join(str(error) for error in invalid.values())[:2000],
        metadata={
            "files_checked": len(checked),
            "files_failed": len(invalid),
            "failing_rows": sum(error.failing_rows for error in invalid.values()),
            "failed_files": dg.MetadataValue.json({name: str(error) for name, error in invalid.items()}),
            "sample": dg.MetadataValue.md(_sample_markdown(invalid) if invalid else "no failing rows"),
        },
    )


@dg.multi_asset(
    specs=[_share_prices_spec()],
    check_specs=[
        dg.AssetCheckSpec(
            INTEGRITY_CHECK,
            asset=SHARE_PRICES_KEY,
            blocking=True,
            description="Before a file is loaded: it is named YYYY-MM-DD.csv and UTF-8, the required columns are "
            "present, dates (YYYY/MM/DD) and numbers parse, share_price > 0, one row per trading date. A failing file "
            "is not loaded; the others are.",
        )
    ],
    partitions_def=share_price_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=WAREHOUSE_POOL,
    name=PIPELINE_NAME,
)
def files_assets(
    context: dg.AssetExecutionContext,
    share_drops: ShareDropsResource,
    warehouse: WarehouseResource,
) -> Iterator[dg.AssetMaterialization | dg.AssetCheckResult]:
    """Check and load the run's files; report one materialization per loaded file, then the check."""
    names = list(context.partition_keys)
    listed = list_drops(share_drops.location)
    drops = {drop.name: drop for drop in listed}
    fingerprints = {name: _fingerprint(drops[name]) for name in names if name in drops}  # before reading
    context.log.info(f"loading {len(names)} share-price file(s) from {share_drops.location}")
    removed = removed_drop_files(context.instance, listed)
    if removed:
        context.log.warning(
            f"{len(removed)} loaded file(s) are no longer in the drop location; their rows stay: "
            f"{', '.join(removed[:10])}{' ...' if len(removed) > 10 else ''}"
        )

    log = LoadLog()
    pipeline = warehouse.dlt_pipeline(PIPELINE_NAME, DATASET)
    pipeline.abort_packages()  # never finish a stale package of an earlier failed run: this run re-reads its files
    pipeline.run(share_price_files(drop_dir=share_drops.location, files=names, log=log)).raise_on_failed_jobs()
    drop_dlt_staging(pipeline)  # dlt leaves the merge's raw_files_staging schema in the warehouse

    if log.rows:
        table = landed_table_metadata(pipeline, SHARE_PRICES_KEY)
        for name, rows in log.rows.items():
            context.log.info(f"{name}: loaded {rows:,} row(s)")
            yield dg.AssetMaterialization(
                asset_key=SHARE_PRICES_KEY,
                partition=name,
                metadata={
                    **table,
                    "rows_loaded": dg.MetadataValue.int(rows),
                    "dagster/partition_row_count": dg.MetadataValue.int(rows),
                    **fingerprint_metadata(drops[name], fingerprints[name]),
                },
            )

    yield integrity_result(names, log.invalid)
    if log.invalid:
        for error in log.invalid.values():
            context.log.error(str(error))
        raise dg.Failure(
            description=f"{len(log.invalid)} of {len(names)} share-price file(s) failed the integrity check and were "
            f"not loaded (the others were): {'; '.join(str(error) for error in log.invalid.values())}"[:4000],
            metadata={"failed_files": dg.MetadataValue.json(sorted(log.invalid))},
        )
