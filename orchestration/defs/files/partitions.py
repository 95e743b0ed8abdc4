"""One partition per dropped file, and which files need a (re)load.

A file needs a load when it has no successful materialization yet, or its content changed since the last one: the
materialization records the file's fingerprint (md5 locally, ETag on S3) with its size and modified time. A local
file whose size and modified time still match what was loaded is not read again; one that was only touched is
hashed and, with the same md5, left alone.

A file deleted from the location after it was loaded keeps its rows (raw is the record of what was delivered, and a
landing folder is often cleaned up once its files are in): the scan reports it as removed, and the sensor says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import dagster as dg

from extract.files.drops import DropFile, list_drops
from orchestration.lib.asset_keys import table_asset_key
from orchestration.lib.planning import PlanContext

share_price_partitions = dg.DynamicPartitionsDefinition(name="share_price_files")
SHARE_PRICES_KEY = table_asset_key("raw_files", "share_prices")

# materialization metadata keys that identify the loaded content
FINGERPRINT, SIZE, MODIFIED = "source_fingerprint", "source_size", "source_modified"
_FETCH_LIMIT = 1000


def fingerprint_metadata(drop: DropFile, fingerprint: str) -> dict[str, dg.MetadataValue]:
    """What a materialization records about the file it loaded, so the next scan can tell if it changed."""
    return {
        FINGERPRINT: dg.MetadataValue.text(fingerprint),
        SIZE: dg.MetadataValue.int(drop.size),
        MODIFIED: dg.MetadataValue.text(drop.modified),
        "source_url": dg.MetadataValue.path(drop.url),
    }


def last_loaded(instance: dg.DagsterInstance, names: Sequence[str]) -> dict[str, Mapping[str, object]]:
    """The fingerprint metadata of each file's latest materialization (files never loaded are absent)."""
    storage_ids = instance.get_latest_storage_id_by_partition(
        SHARE_PRICES_KEY, dg.DagsterEventType.ASSET_MATERIALIZATION, set(names)
    )
    ids, loaded = list(storage_ids.values()), {}
    for start in range(0, len(ids), _FETCH_LIMIT):
        chunk = ids[start : start + _FETCH_LIMIT]
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=SHARE_PRICES_KEY, storage_ids=chunk), limit=len(chunk)
        ).records
        for record in records:
            materialization = record.asset_materialization
            if materialization and materialization.partition:
                loaded[materialization.partition] = {k: v.value for k, v in materialization.metadata.items()}
    return loaded


def is_loaded(drop: DropFile, last: Mapping[str, object] | None) -> bool:
    """Whether the file's current content is the content of its last load (hashes a local file only if its size or
    modified time changed)."""
    if not last:
        return False
    if not drop.etag and last.get(SIZE) == drop.size and last.get(MODIFIED) == drop.modified:
        return True
    return last.get(FINGERPRINT) == drop.fingerprint()


def register_drops(instance: dg.DagsterInstance, drops: Sequence[DropFile]) -> list[str]:
    """Add files not yet known as partitions (in name order); returns the names added."""
    known = set(instance.get_dynamic_partitions(share_price_partitions.name))
    new = [drop.name for drop in drops if drop.name not in known]
    if new:
        instance.add_dynamic_partitions(share_price_partitions.name, new)
    return new


@dataclass(frozen=True)
class DropScan:
    """What a look at the drop location found."""

    pending: list[DropFile]  # new, or changed since their last load
    removed: list[str]  # loaded before, no longer at the location: their rows stay in raw_files.share_prices


def removed_drop_files(instance: dg.DagsterInstance, drops: Sequence[DropFile]) -> list[str]:
    """The files that were loaded (a materialized partition, not deleted) and are no longer at the location."""
    partitions = set(instance.get_dynamic_partitions(share_price_partitions.name))
    loaded = set(instance.get_materialized_partitions(SHARE_PRICES_KEY)) & partitions
    return sorted(loaded - {drop.name for drop in drops})


def scan_drops(instance: dg.DagsterInstance, location: str) -> DropScan:
    """Register new files as partitions; return the files new or changed since their last load, and the loaded
    files that were removed."""
    drops = list_drops(location)
    register_drops(instance, drops)
    loaded = last_loaded(instance, [drop.name for drop in drops])
    pending = [drop for drop in drops if not is_loaded(drop, loaded.get(drop.name))]
    return DropScan(pending=pending, removed=removed_drop_files(instance, drops))


def pending_drops(instance: dg.DagsterInstance, location: str) -> list[DropFile]:
    """Register new files as partitions; return the files that are new or changed since their last load."""
    return scan_drops(instance, location).pending


def pending_drop_files(instance: dg.DagsterInstance, location: str) -> list[str]:
    """The partition keys (file names) to load: new files, and files whose content changed since their last load."""
    return [drop.name for drop in pending_drops(instance, location)]


def pending_files(context: PlanContext) -> list[str]:
    """What a whole-pipeline run loads (`elt run`): the files new or changed at the drop location."""
    return pending_drop_files(context.instance, context.resources["share_drops"].location)
