"""Generate the demo NeoWs feed days 2018-09-06 .. 2018-09-11 in the shape of the real 2018-09-05 response.

Deterministic (fixed seed): `uv run python extract/nasa/recorded/generate.py` rewrites the same files.
"""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
REAL_DAY = date(2018, 9, 5)
DAYS = [REAL_DAY + timedelta(days=n) for n in range(1, 7)]
API = "https://api.nasa.gov/neo/rest/v1"
AU_KM = 149597870.7
KM_MI = 0.621371192
KM_FT = 3280.8398950131
LUNAR_PER_AU = 389.0
HALF_MONTHS = "ABCDEFGHJKLMNOPQRSTUVWXY"
LETTERS = "ABCDEFGHJKLMNOPQRSTUVWXYZ"


def feed_url(day: date) -> str:
    return f"{API}/feed?start_date={day}&end_date={day}&detailed=false&api_key=DEMO_KEY"


def diameter(h: float) -> dict[str, dict[str, float]]:
    """NeoWs' diameter range from absolute magnitude: albedo 0.25 (min) to 0.05 (max)."""
    km_min = 1329 / math.sqrt(0.25) * 10 ** (-h / 5)
    km_max = 1329 / math.sqrt(0.05) * 10 ** (-h / 5)
    units = {"kilometers": 1.0, "meters": 1000.0, "miles": KM_MI, "feet": KM_FT}
    return {
        unit: {
            "estimated_diameter_min": round(km_min * factor, 10),
            "estimated_diameter_max": round(km_max * factor, 10),
        }
        for unit, factor in units.items()
    }


def new_object(rng: random.Random) -> dict:
    year = rng.randint(1995, 2018)
    designation = f"{year} {rng.choice(HALF_MONTHS)}{rng.choice(LETTERS)}{rng.choice(['', str(rng.randint(1, 60))])}"
    if rng.random() < 0.3:  # a numbered object: "465824 (2010 FR)"
        number = rng.randint(100000, 530000)
        reference_id, name = f"2{number}", f"{number} ({designation})"
    else:
        reference_id, name = str(rng.randint(3700000, 3840000)), f"({designation})"
    h = round(rng.uniform(17.5, 28.5), rng.choice([1, 3]))
    return {
        "links": {"self": f"{API}/neo/{reference_id}?api_key=DEMO_KEY"},
        "neo_reference_id": reference_id,
        "name": name,
        "nasa_jpl_url": f"http://ssd.jpl.nasa.gov/sbdb.cgi?sstr={reference_id}",
        "absolute_magnitude_h": h,
        "estimated_diameter": diameter(h),
        "is_potentially_hazardous_asteroid": h <= 22.0 and rng.random() < 0.6,
        "close_approach_data": [],
    }


def close_approach(rng: random.Random, day: date) -> dict:
    kps = rng.uniform(2.5, 32.0)
    au = rng.uniform(0.002, 0.49)
    km = round(au * AU_KM)
    epoch = datetime(day.year, day.month, day.day, 7, tzinfo=UTC)  # the older feed's epochs: 00:00 PDT
    return {
        "close_approach_date": day.isoformat(),
        "epoch_date_close_approach": int(epoch.timestamp()) * 1000,
        "relative_velocity": {
            "kilometers_per_second": f"{kps:.10f}",
            "kilometers_per_hour": f"{kps * 3600:.10f}",
            "miles_per_hour": f"{kps * 3600 * KM_MI:.10f}",
        },
        "miss_distance": {
            "astronomical": f"{au:.10f}",
            "lunar": f"{au * LUNAR_PER_AU:.9f}",
            "kilometers": str(km),
            "miles": str(round(km * KM_MI)),
        },
        "orbiting_body": "Earth",
    }


def main() -> None:
    rng = random.Random(20180905)
    real = json.loads((HERE / f"feed_{REAL_DAY}.json").read_text())
    previous = real["near_earth_objects"][str(REAL_DAY)]
    for day in DAYS:
        recurring = rng.sample(previous, k=min(len(previous), rng.randint(1, 3)))
        fresh = [new_object(rng) for _ in range(rng.randint(5, 13))]
        objects = []
        for template in [*recurring, *fresh]:
            neo = json.loads(json.dumps(template))  # a copy: each feed day shows only that day's approach
            neo["close_approach_data"] = [close_approach(rng, day)]
            objects.append(neo)
        response = {
            "links": {
                "next": feed_url(day + timedelta(days=1)),
                "prev": feed_url(day - timedelta(days=1)),
                "self": feed_url(day),
            },
            "element_count": len(objects),
            "near_earth_objects": {str(day): objects},
        }
        path = HERE / f"feed_{day}.generated.json"
        path.write_text(json.dumps(response, indent=1) + "\n")
        print(f"{path.name}: {len(objects)} objects, {len(recurring)} seen the day before")
        previous = objects


if __name__ == "__main__":
    main()
