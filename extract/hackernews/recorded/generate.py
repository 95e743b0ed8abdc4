"""Generate the demo Hacker News feed: 300 items in the shape of the real items API, not recorded from it.

Stories (some Ask HN, with text instead of a url) with comment threads, replies to comments, a few jobs, and a
deleted and a dead story and comment, posted from 2024-03-01 to 2024-03-10 (UTC). Ids are consecutive and grow
with time, as the API's do. A story's `descendants` is its number of live (not deleted, not dead) comments in this
file, at any depth; deleted and dead items have no replies.

Deterministic (fixed seed): `uv run python extract/hackernews/recorded/generate.py` rewrites the same file.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "items.generated.json"
ITEMS = 300
FIRST_ID = 39_560_000  # about where the real ids were in March 2024
START = int(datetime(2024, 3, 1, tzinfo=UTC).timestamp())
DAYS = 10
HOUR = 3600
JOBS = 5

USERS = [f"{first}{second}" for first in ("ada", "bo", "cy", "dee", "eli", "fay", "gus") for second in ("_x", "99", "")]
TOPICS = ["DuckDB", "Rust", "SQLite", "Postgres", "WebAssembly", "Zig", "dbt", "Kubernetes", "LLMs", "Emacs"]
STORY_TITLES = [
    "Show HN: A {} extension I built over a weekend",
    "Why we moved from {} and back again",
    "{} 2.0 released",
    "The hidden cost of {} in production",
    "A visual guide to {} internals",
    "Lessons from ten years of {}",
]
ASK_TITLES = ["Ask HN: Is {} worth learning in 2024?", "Ask HN: How do you test {} code?"]
REPLIES = ["Agreed.", "Do you have a source for that?", "We hit the same issue with {}.", "This matches my experience."]


def story(rng: random.Random, posted: int) -> dict[str, Any]:
    topic = rng.choice(TOPICS)
    item: dict[str, Any] = {"by": rng.choice(USERS), "score": rng.randint(1, 400), "time": posted, "type": "story"}
    if rng.random() < 0.15:
        item |= {"title": rng.choice(ASK_TITLES).format(topic), "text": f"Curious how others approach {topic}."}
    else:
        slug = topic.lower().replace(" ", "-")
        item |= {"title": rng.choice(STORY_TITLES).format(topic), "url": f"https://example.com/{slug}/{posted}"}
    return item


def comment(rng: random.Random, posted: int) -> dict[str, Any]:
    text = rng.choice(REPLIES).format(rng.choice(TOPICS))
    return {"by": rng.choice(USERS), "text": f"<p>{text}</p>", "time": posted, "type": "comment"}


def thread(rng: random.Random, posted: int, comments: int) -> list[dict[str, Any]]:
    """A story and `comments` replies, each under the story or an earlier reply and posted after it; items are
    linked by position (`_parent`) until ids are assigned."""
    items = [story(rng, posted)]
    for _ in range(comments):
        parent = 0 if len(items) == 1 or rng.random() < 0.4 else rng.randrange(1, len(items))
        reply = comment(rng, items[parent]["time"] + rng.randint(60, 6 * HOUR))
        items.append(reply | {"_parent": parent})
    return items


def main() -> None:
    rng = random.Random(20240301)
    end = START + DAYS * 24 * HOUR
    oddities = 4  # a deleted and a dead story, a deleted and a dead comment
    live = ITEMS - JOBS - oddities
    threads: list[list[dict[str, Any]]] = []
    while live > 0:  # stories over the first nine and a half days, so their threads end before the tenth day does
        comments = min(rng.choice([0, 1, 2, 3, 4, 5, 6, 8, 10]), live - 1)
        threads.append(thread(rng, rng.randint(START, end - 14 * HOUR), comments))
        live -= comments + 1

    # the deleted and dead comments hang under live items of two threads; they are not counted in descendants
    for flag in ("deleted", "dead"):
        items = rng.choice([t for t in threads if len(t) > 1])
        parent = rng.randrange(len(items))
        reply = comment(rng, items[parent]["time"] + rng.randint(60, HOUR))
        items.append(reply | {"_parent": parent, flag: True})
    for flag in ("deleted", "dead"):
        threads.append([story(rng, rng.randint(START, end - HOUR)) | {flag: True}])
    for _ in range(JOBS):
        title = f"{rng.choice(['Acme', 'Initech', 'Hooli'])} (YC W2{rng.randint(0, 3)}) is hiring engineers"
        job = {"by": rng.choice(USERS), "score": 1, "time": rng.randint(START, end - HOUR), "title": title}
        threads.append([job | {"type": "job", "url": f"https://example.com/jobs/{rng.randint(1, 999)}"}])

    # ids in time order; then each item gets its parent's id, kids and (stories) descendants
    ordered = sorted((item for items in threads for item in items), key=lambda item: item["time"])
    for offset, item in enumerate(ordered):
        item["id"] = FIRST_ID + offset
    for items in threads:
        for item in items:
            if "_parent" in item:
                parent = items[item.pop("_parent")]
                item["parent"] = parent["id"]
                parent.setdefault("kids", []).append(item["id"])
        head = items[0]
        if head["type"] == "story":
            head["descendants"] = sum(1 for item in items[1:] if not item.get("deleted") and not item.get("dead"))
    for item in ordered:
        if item.get("deleted"):  # the API keeps only these fields of a deleted item
            item_id, kind, posted = item["id"], item["type"], item["time"]
            item.clear()
            item.update(deleted=True, id=item_id, time=posted, type=kind)
        if "kids" in item:
            item["kids"].sort(reverse=True)  # the API lists the newest reply first, as ranked for display
    assert len(ordered) == ITEMS and all(START <= item["time"] < end for item in ordered)

    OUTPUT.write_text(json.dumps([dict(sorted(item.items())) for item in ordered], indent=1) + "\n")
    kinds = {kind: sum(item["type"] == kind for item in ordered) for kind in ("story", "comment", "job")}
    print(f"{OUTPUT.name}: {len(ordered)} items, ids {FIRST_ID}..{FIRST_ID + len(ordered) - 1}, {kinds}")


if __name__ == "__main__":
    main()
