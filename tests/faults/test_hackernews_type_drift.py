"""Type drift at ingestion in Hacker News: a field whose JSON type changes between items. The real pipeline
(`run_pipeline`, Dagster in process) runs against a replay server on 127.0.0.1 serving the drifted items, and the test
checks three things: the known spellings are converted explicitly, any other value fails the run naming the item,
the column, the value and the day, and nothing partial lands: the raw table keeps its rows, and a re-run after the
source is fixed loads every item exactly once."""

import json
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from extract.hackernews.replay import HackerNewsReplay, recorded_items
from tests.support import query, run_extracts, use_platform_env, variant_columns

# the extract asset alone: dbt's source tests on it are checks too, run by the dbt op, so leave checks out
HACKERNEWS_ASSET = dg.AssetSelection.assets(dg.AssetKey(["raw_hackernews", "items"])).without_checks()


def run(instance: dg.DagsterInstance):
    """One pass over the Hacker News asset (no dbt), and the failure descriptions of its failed steps."""
    return run_extracts(instance, HACKERNEWS_ASSET)


def test_hackernews_converts_the_known_spellings_and_fails_naming_item_column_value_and_day(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = list(recorded_items().values())[:30]
    ids = [item["id"] for item in items]
    stories = [item for item in items if item["type"] == "story" and "score" in item]
    comments = [item for item in items if item["type"] == "comment" and not item.get("deleted")]
    assert stories and len(comments) >= 2
    spelled = {stories[0]["id"]: {"score": str(stories[0]["score"])}, comments[0]["id"]: {"dead": "false"}}
    spelled[comments[1]["id"]] = {"deleted": 0, "parent": float(comments[1]["parent"])}
    for item in items:
        item.update(spelled.get(item["id"], {}))
    recorded = tmp_path / "items.json"
    recorded.write_text(json.dumps(items))
    first_run, bad = ids[19], next(item for item in items[20:] if item.get("by"))
    environ = {"ELT_HACKERNEWS_MAX_ITEMS": "30"}

    with HackerNewsReplay(recorded, max_item=first_run) as server, dg.instance_for_test() as instance:
        use_platform_env(monkeypatch, tmp_path / "data", ELT_HACKERNEWS_BASE_URL=server.base_url, **environ)
        summary, failures = run(instance)
        assert summary.ok and not failures, (summary.runs, failures)
        warehouse = summary.warehouse
        columns = "id, score, dead, deleted, parent"
        loaded = {row[0]: row[1:] for row in query(warehouse, f"select {columns} from raw_hackernews.items")}
        assert loaded[stories[0]["id"]][0] == int(spelled[stories[0]["id"]]["score"])
        assert loaded[comments[0]["id"]][1] is False
        assert loaded[comments[1]["id"]][2:] == (False, comments[1]["parent"])
        assert variant_columns(warehouse, "raw_hackernews") == []

        # ten new items, one of them with a name where a user name was: the run fails, nothing of it lands
        server.items[bad["id"]] = {**bad, "by": {"name": bad["by"]}}
        server.max_item = ids[-1]
        summary, failures = run(instance)
        assert not summary.success
        [failure] = failures
        day = datetime.fromtimestamp(bad["time"], UTC).date().isoformat()
        assert f"item {bad['id']}" in failure and "`by`" in failure and f'{{"name": "{bad["by"]}"}}' in failure
        assert f"posted {day}" in failure, failure
        assert query(warehouse, "select count(*), max(id) from raw_hackernews.items") == [(20, first_run)]

        # fixed: the next run asks for the same ten items (the cursor did not move) and loads each once
        server.items[bad["id"]] = bad
        server.clear_requests()
        summary, failures = run(instance)
        assert summary.ok and not failures, (summary.runs, failures)
        assert server.requested_item_ids() == ids[20:]
    assert query(warehouse, "select count(*), count(distinct id) from raw_hackernews.items") == [(30, 30)]
    assert variant_columns(warehouse, "raw_hackernews") == []
