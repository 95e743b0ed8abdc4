"""The integrity check a drop file passes before any of its rows are loaded: its name, its header, then SQL over
the file's staged rows.

Its rules are the casts dbt staging applies (`strptime(date, '%Y/%m/%d')`, `decimal(18, 4)`), `share_price > 0` and
one row per trading date (staging's key is the file and the date), so a file that passes cannot break staging; a
clean file costs one columnar scan. Row numbers count data rows from 1 (row 1 is line 2, under the header), the same
numbering as `_source_row`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

import duckdb

SHARE_PRICE_COLUMNS = ("date", "share_price", "amount", "spend", "shift", "spread")
NUMBER_COLUMNS = ("share_price", "amount", "spend", "shift", "spread")
DATE_FORMAT = "%Y/%m/%d"
NUMBER_TYPE = "decimal(18, 4)"
SAMPLE_SIZE = 10
DROP_NAME = re.compile(r"(\d{4}-\d{2}-\d{2})\.csv")  # the name is the drop date


@dataclass(frozen=True)
class Problem:
    """One failing value: `row` None means the whole file (its header, or a parse error DuckDB could not place)."""

    row: int | None
    column: str | None
    value: str | None
    problem: str

    def describe(self) -> str:
        if self.row is None:
            where = f"header, column {self.column}: " if self.column else ""
        else:
            where = f"row {self.row} (line {self.row + 1})" + (f", column {self.column}" if self.column else "") + ": "
        value = "" if self.value is None else f"{self.value!r} "
        return f"{where}{value}{self.problem}"


class InvalidDropFile(ValueError):
    """A drop file failed the integrity check; the message names the file, the row and the column."""

    def __init__(self, file: str, failing_rows: int, sample: list[Problem]):
        self.file, self.failing_rows, self.sample = file, failing_rows, sample
        rows = f"{failing_rows} row(s) fail" if failing_rows else "the file fails"
        detail = "; ".join(problem.describe() for problem in sample[:3])
        more = f" (+{len(sample) - 3} more in the sample)" if len(sample) > 3 else ""
        super().__init__(f"{file}: {rows} the integrity check: {detail}{more}")


TRADING_DATE = "_trading_date"  # the parsed `date`, computed once per row (`_with_trading_date`)


def _with_trading_date(relation: str) -> str:
    return f"(select *, try_strptime(\"date\", '{DATE_FORMAT}') as {TRADING_DATE} from {relation})"


def _rules() -> list[tuple[str, str, str]]:
    """Per checked column: (name, a fast predicate true for a failing value, a CASE naming the problem), over
    `_with_trading_date(relation)`.

    The predicates are what the clean path costs (one scan, one cast per value: a number column's `trim` runs only
    where the cast failed, inside the CASE); the naming CASEs run only on a failing file.
    """
    number = f"try_cast({{c}} as {NUMBER_TYPE})"
    empty = "nullif(trim({c}), '') is null"
    rules = [
        (
            "date",
            f"{TRADING_DATE} is null",
            f"""case when {empty.format(c='"date"')} then 'is empty'
                else 'is not a date like 2018/09/28' end""",
        ),
        (
            "share_price",
            f"not coalesce({number.format(c='share_price')} > 0, false)",
            f"""case when {empty.format(c="share_price")} then 'is empty'
                when {number.format(c="share_price")} is null then 'is not a number' else 'must be > 0' end""",
        ),
    ]
    for column in NUMBER_COLUMNS[1:]:
        quoted = f'"{column}"'
        rules.append(
            (
                column,
                # failing: not a number and not empty (empty is NULL in staging)
                f"case when {number.format(c=quoted)} is not null then false else not {empty.format(c=quoted)} end",
                "'is not a number'",
            )
        )
    return rules


def drop_date(file: str) -> date | None:
    """The drop date a file's name gives (`2018-01-24.csv`); None when the name is not exactly a date and `.csv`."""
    match = DROP_NAME.fullmatch(file)
    try:
        return date.fromisoformat(match.group(1)) if match else None
    except ValueError:  # 2018-02-30.csv
        return None


def check_name(file: str) -> None:
    """A drop file is named by its drop date, `YYYY-MM-DD.csv`: staging reads the date from the name, and a copy
    such as `2018-01-24 (1).csv` would load the same prices again as another file."""
    if drop_date(file) is None:
        problem = "is not named by its drop date, YYYY-MM-DD.csv (e.g. 2018-01-24.csv): rename it to load it"
        raise InvalidDropFile(file, 0, [Problem(None, None, None, problem)])


def check_header(file: str, header: list[str]) -> None:
    """The header names every required column, once (extra columns are allowed and not loaded)."""
    if not any(header) or len(set(header)) != len(header):
        problem = f"has no usable header (empty or repeated column names: {header})"
        raise InvalidDropFile(file, 0, [Problem(None, None, None, problem)])
    missing = [column for column in SHARE_PRICE_COLUMNS if column not in header]
    if missing:
        problems = [Problem(None, column, None, "is missing from the header") for column in missing]
        raise InvalidDropFile(file, 0, problems)


def _clean_path_counts(rules: list[tuple[str, str, str]]) -> str:
    """The aggregates a clean file is judged by: its rows, how many fail a rule, how many have a trading date and
    how many distinct ones (a file passes with rows, none failing and no date repeated)."""
    any_failing = " or ".join(f"({predicate})" for _, predicate, _ in rules)
    return f"count(*), count(*) filter ({any_failing}), count({TRADING_DATE}), count(distinct {TRADING_DATE})"


def passing_files(con: duckdb.DuckDBPyConnection, relation: str) -> dict[str, int]:
    """The clean path over many files' staged rows at once (`relation`: VARCHAR columns plus `_source_file` and
    `_source_row`): one scan, grouped by file; returns the row count of each file that passes. A file missing from
    the result failed (or has no rows): `check_share_prices` on its rows alone says why."""
    rows = con.execute(
        f"select _source_file, {_clean_path_counts(_rules())} from {_with_trading_date(relation)} group by _source_file"
    ).fetchall()
    return {file: count for file, count, failing, dated, dates in rows if not failing and dated == dates}


def check_share_prices(con: duckdb.DuckDBPyConnection, relation: str, file: str) -> int:
    """Check a drop file's rows (`relation`: its VARCHAR columns plus `_source_row`); returns the row count, raises
    InvalidDropFile with the failing rows' count and a sample."""
    rules = _rules()
    relation = _with_trading_date(relation)
    rows, failing, dated, dates = con.execute(f"select {_clean_path_counts(rules)} from {relation}").fetchone()
    if rows == 0:
        raise InvalidDropFile(file, 0, [Problem(None, None, None, "has no data rows under the header")])
    if not failing and dated == dates:
        return rows
    checks = [
        f"""select _source_row as row, {position} as position, '{column}' as "column", "{column}" as value,
            {case} as problem from {relation} where {predicate}"""
        for position, (column, predicate, case) in enumerate(rules)
    ]
    # a trading date seen on an earlier row of the file: named on each later row, with the first row's number
    checks.append(
        f"""select _source_row as row, {len(rules)} as position, 'date' as "column", "date" as value,
            'repeats the trading date of row ' || first_row || ' (line ' || (first_row + 1) || ')' as problem
        from (select _source_row, "date", {TRADING_DATE},
                min(_source_row) over (partition by {TRADING_DATE}) as first_row
              from {relation})
        where {TRADING_DATE} is not null and _source_row > first_row"""
    )
    failing_rows, sample = con.execute(
        f"""with checks as ({" union all ".join(checks)})
            select (select count(distinct row) from checks),
                (select list((row, "column", value, problem) order by row, position)
                 from (select * from checks order by row, position limit {SAMPLE_SIZE}))"""
    ).fetchone()
    raise InvalidDropFile(file, failing_rows, [Problem(*item) for item in sample])
