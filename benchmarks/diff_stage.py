"""The `branch_diff` stage: `elt branch diff`'s SQL over one model of `scale.orders` rows, against a plain DuckDB
`EXCEPT` comparison of the same two tables (both directions).

Two DuckDB files, a prod and a branch version of `marts.orders_wide`, generated with `range()`: the branch changes
`amount` in every 100th row (id % 100 = 7), lacks every 1000th (id % 1000 = 3) and adds rows / 500 new ids. Both
sides check their counts against those numbers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.generate import quiet_connect

TABLE = ("marts", "orders_wide")
MEMORY_LIMIT = "512MB"  # the diff's default (`elt branch diff --memory-limit`)


@dataclass(frozen=True)
class DiffData:
    prod: Path
    branch: Path
    rows: int  # rows in prod

    @property
    def changed(self) -> int:
        return len(range(7, self.rows, 100))

    @property
    def removed(self) -> int:
        return len(range(3, self.rows, 1000))

    @property
    def added(self) -> int:
        return max(1, self.rows // 500)


def _create(path: Path, select: str) -> None:
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    with quiet_connect(partial) as con:
        con.execute(f"create schema {TABLE[0]}")
        con.execute(f"create table {TABLE[0]}.{TABLE[1]} as {select}")
    partial.rename(path)


def _rows(first: int, last: int) -> str:
    return f"""
        select
            range as id,
            (range * 7919) % 1000003 as customer_id,
            cast(((range * 104729) % 100000) / 100.0 + 1 as decimal(12, 2)) as amount,
            ['new', 'paid', 'shipped', 'returned'][1 + range % 4] as status,
            timestamp '2024-01-01' + to_seconds(range * 13) as created_at,
            'order ' || range as note
        from range({first}, {last})
    """


def generate_diff_data(folder: Path, rows: int) -> DiffData:
    """The two versions (kept in `folder` and reused when `rows` matches)."""
    data = DiffData(folder / f"prod_{rows}.duckdb", folder / f"branch_{rows}.duckdb", rows)
    folder.mkdir(parents=True, exist_ok=True)
    if not data.prod.exists():
        _create(data.prod, _rows(0, rows))
    if not data.branch.exists():
        changed = "amount + 1" if rows else "amount"
        _create(
            data.branch,
            f"select id, customer_id, case when id % 100 = 7 then {changed} else amount end as amount, status, "
            f"created_at, note from ({_rows(0, rows)}) where id % 1000 <> 3 "
            f"union all {_rows(rows, rows + data.added)}",
        )
    return data


def _check(what: str, found: dict[str, int], wanted: dict[str, int]) -> None:
    if found != wanted:
        raise RuntimeError(f"{what} found {found}, the generated data has {wanted}")


def diff_platform(run_dir: Path, folder: Path, rows: int) -> tuple[float, int]:
    """The diff as `elt branch diff` runs it: its session (prod read-only, memory capped, spilling to the run
    folder) and its keyed diff, counts and samples."""
    from orchestration.branch.diff import Relation, diff_tables, session_for
    from orchestration.lib.environment import Environment

    data = generate_diff_data(folder, rows)
    env = Environment(
        name="branch",
        warehouse=str(data.branch),
        data_dir=run_dir,
        branch_id="bench",
        prod_warehouse=str(data.prod),
    )
    start = time.perf_counter()
    session = session_for(env, MEMORY_LIMIT, run_dir / "diff_tmp")
    with session.open() as con:
        result = diff_tables(
            con, Relation(session.prod_catalog, *TABLE), Relation(session.branch_catalog, *TABLE), ["id"]
        )
    seconds = time.perf_counter() - start
    _check(
        "the diff",
        {"added": result.added_rows, "removed": result.removed_rows, "changed": result.changed_rows},
        {"added": data.added, "removed": data.removed, "changed": data.changed},
    )
    _check("the diff", {"amount": result.changed_columns.get("amount", 0)}, {"amount": data.changed})
    return seconds, rows


def diff_reference(run_dir: Path, folder: Path, rows: int) -> tuple[float, int]:
    """Plain DuckDB (its default settings): the rows only prod has and the rows only the branch has, by EXCEPT."""
    data = generate_diff_data(folder, rows)
    start = time.perf_counter()
    with quiet_connect() as con:
        con.execute(f"attach '{data.prod}' as prod (read_only)")
        con.execute(f"attach '{data.branch}' as branch (read_only)")
        table = ".".join(TABLE)
        only_prod, only_branch = con.execute(
            f"select (select count(*) from (from prod.{table} except from branch.{table})), "
            f"(select count(*) from (from branch.{table} except from prod.{table}))"
        ).fetchone()
    seconds = time.perf_counter() - start
    _check(
        "EXCEPT",
        {"only prod": only_prod, "only branch": only_branch},
        {"only prod": data.changed + data.removed, "only branch": data.changed + data.added},
    )
    return seconds, rows
