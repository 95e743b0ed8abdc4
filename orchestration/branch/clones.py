"""Clones of the prod warehouse, one per pull request: create, drop, list, sweep; on MotherDuck and on DuckDB files.

Every clone carries a marker table (`elt_meta.branch_clone`: branch id, what it was cloned from, when) written when
it is created. Drop and sweep act only on a database that is named like a clone of this prod, is not prod, and
carries the marker for that id: prod, or a database someone put where a clone would be, is never dropped.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from orchestration.lib import motherduck
from orchestration.lib.environment import (
    Environment,
    EnvironmentConfigError,
    ProdWriteRefused,
    branch_of,
    branch_warehouse,
    resolve,
)
from orchestration.lib.meta import META_SCHEMA, literal, quote, table_exists

MARKER_TABLE = "branch_clone"
LOCK_RETRY_SECONDS = 2.0
DEFAULT_MAX_AGE_DAYS = 7  # the sweep drops clones older than this
# the DuckDB that copies prod into a clone file: unbounded it takes what the copy touches (1,008 MiB for a 455 MB
# prod at 10m, and more as prod grows; 80% of RAM at most), at 512MB it peaked at 602 MiB in the same time
CLONE_MEMORY_LIMIT = "512MB"


def copy_session(spill: Path) -> duckdb.DuckDBPyConnection:
    """The in-memory DuckDB a local clone is copied through, bounded to CLONE_MEMORY_LIMIT, spilling to `spill`."""
    return duckdb.connect(config={"memory_limit": CLONE_MEMORY_LIMIT, "temp_directory": str(spill)})


def branch_environment(branch_id: str, environ: Mapping[str, str] | None = None) -> Environment:
    """The branch environment for `branch_id` beside the prod this process is configured with (id check and
    prod-write guard included)."""
    return branch_of(resolve(environ), branch_id)


def motherduck_database(location: str) -> str:
    """`md:<name>` -> `<name>`, refusing options (a token belongs in MOTHERDUCK_TOKEN)."""
    try:
        return motherduck.database_name(location)
    except motherduck.MotherDuckLocationError as error:
        raise EnvironmentConfigError(f"ELT_PROD_DATABASE: {error}") from None


class NotAClone(EnvironmentConfigError):
    """Drop or sweep was pointed at a database that `elt branch create` did not make."""


@dataclass(frozen=True)
class Clone:
    branch_id: str
    location: str  # file path or `md:<database>`
    created_at: datetime | None  # from the marker; None when the database carries none (not a clone)


def marker_sql(catalog: str) -> list[str]:
    """Statements that mark `catalog` as a clone; parameters: branch id, cloned-from location."""
    return [
        f"create schema if not exists {quote(catalog)}.{META_SCHEMA}",
        f"create or replace table {quote(catalog)}.{META_SCHEMA}.{MARKER_TABLE} as "
        "select ?::varchar as branch_id, ?::varchar as cloned_from, now()::timestamptz as created_at",
    ]


def read_marker(con: duckdb.DuckDBPyConnection, catalog: str) -> tuple[str, datetime] | None:
    """(branch id, created at) from a clone's marker, or None when the database has no marker."""
    if not table_exists(con, catalog, META_SCHEMA, MARKER_TABLE):
        return None
    row = con.execute(
        f"select branch_id, created_at from {quote(catalog)}.{META_SCHEMA}.{MARKER_TABLE} limit 1"
    ).fetchone()
    return (row[0], row[1].astimezone(UTC)) if row else None


def _not_a_clone(location: str, branch_id: str) -> NotAClone:
    return NotAClone(
        f"{location} is not the clone of branch {branch_id!r} (no {META_SCHEMA}.{MARKER_TABLE} marker for that id); "
        "only databases made by `elt branch create` are dropped: remove it by hand if it is yours"
    )


class LocalClones:
    """Clones as DuckDB files under `<data_dir>/warehouse/branches/`, copied from the prod file through DuckDB."""

    def __init__(self, prod: Path, data_dir: Path, lock_wait_seconds: float = 300.0) -> None:
        self.prod = prod
        self.data_dir = data_dir
        self.lock_wait_seconds = lock_wait_seconds

    @property
    def folder(self) -> Path:
        return Path(branch_warehouse(str(self.prod), "x", self.data_dir)).parent

    def location(self, branch_id: str) -> Path:
        return Path(branch_warehouse(str(self.prod), branch_id, self.data_dir))

    def _attach_prod(self, con: duckdb.DuckDBPyConnection) -> None:
        """Attach prod read-only; a DuckDB writer holds the file lock, so wait until prod's run is over."""
        if not self.prod.exists():
            raise EnvironmentConfigError(
                f"the prod warehouse {self.prod} does not exist (ELT_PROD_DATABASE): build prod first"
            )
        deadline = time.monotonic() + self.lock_wait_seconds
        while True:
            try:
                con.execute(f"attach {literal(str(self.prod))} as {quote(self.prod.stem)} (read_only)")
                return
            except duckdb.IOException as error:
                if "lock" not in str(error).lower() or time.monotonic() > deadline:
                    raise EnvironmentConfigError(
                        f"cannot read the prod warehouse {self.prod}: {error}. A prod run holds it; "
                        f"waited {self.lock_wait_seconds:.0f} s, retry when it is over"
                    ) from error
                time.sleep(LOCK_RETRY_SECONDS)

    def create(self, branch_id: str) -> Clone:
        """A consistent copy of prod: COPY FROM DATABASE in one read transaction, into a temp file moved into place."""
        target = self.location(branch_id)
        _refuse_prod(target, self.prod)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        partial.unlink(missing_ok=True)
        spill = partial.with_name(f"{partial.name}.tmp")
        try:
            with copy_session(spill) as con:
                self._attach_prod(con)  # attached under its own name: prod's views name that catalog
                con.execute(f"attach {literal(str(partial))} as elt_branch_target")
                con.execute(f"copy from database {quote(self.prod.stem)} to elt_branch_target")
                for statement in marker_sql("elt_branch_target"):
                    con.execute(statement, [branch_id, str(self.prod)] if "?" in statement else None)
                con.execute("detach elt_branch_target")
        finally:
            shutil.rmtree(spill, ignore_errors=True)
        Path(f"{target}.wal").unlink(missing_ok=True)  # an old clone's log must not replay into the new file
        os.replace(partial, target)
        return self.describe(branch_id)

    def describe(self, branch_id: str) -> Clone:
        location = self.location(branch_id)
        return Clone(branch_id, str(location), self._marker(location, branch_id))

    def _marker(self, location: Path, branch_id: str) -> datetime | None:
        try:
            with duckdb.connect(str(location), read_only=True) as con:
                marker = read_marker(con, con.execute("select current_database()").fetchone()[0])
        except duckdb.Error:
            return None  # not a DuckDB file, or in use by a writer: either way not ours to judge now
        return marker[1] if marker and marker[0] == branch_id else None

    def drop(self, branch_id: str) -> bool:
        """Delete the clone file; False when there was none. Refuses prod and files without the marker."""
        location = self.location(branch_id)
        _refuse_prod(location, self.prod)
        if not location.exists():
            return False
        if self._marker(location, branch_id) is None:
            raise _not_a_clone(str(location), branch_id)
        location.unlink()
        Path(f"{location}.wal").unlink(missing_ok=True)
        shutil.rmtree(self.data_dir / "branches" / branch_id, ignore_errors=True)  # its dbt target and state
        return True

    def list(self) -> list[Clone]:
        if not self.folder.is_dir():
            return []
        return [self.describe(path.stem) for path in sorted(self.folder.glob("*.duckdb")) if path != self.prod]


def _refuse_prod(location: Path, prod: Path) -> None:
    if location.resolve() == prod.resolve() or (location.exists() and prod.exists() and location.samefile(prod)):
        raise ProdWriteRefused(f"{location} is the prod warehouse (ELT_PROD_DATABASE): a branch never replaces it")


def motherduck_create_sql(prod: str, clone: str) -> str:
    """A zero-copy clone; replaces an older clone of the same PR."""
    return f"create or replace database {quote(clone)} from {quote(prod)}"


def motherduck_drop_sql(clone: str) -> str:
    return f"drop database if exists {quote(clone)}"


def motherduck_list_sql() -> str:
    """Databases whose name starts with `<prod>_clone_` (parameter: that prefix, LIKE-escaped)."""
    return "select database_name from duckdb_databases() where database_name like ? escape '\\' order by 1"


class MotherDuckClones:
    """Clones as MotherDuck databases `<prod>_clone_<id>`, made by zero-copy CREATE DATABASE ... FROM."""

    def __init__(self, prod: str, connect: Callable[[], duckdb.DuckDBPyConnection] | None = None) -> None:
        self.prod = motherduck_database(prod)
        self.connect = connect or (lambda: duckdb.connect(motherduck.WORKSPACE))

    @property
    def prefix(self) -> str:
        return f"{self.prod}_clone_"

    def database(self, branch_id: str) -> str:
        return motherduck_database(branch_warehouse(motherduck.location(self.prod), branch_id, Path(".")))

    def create(self, branch_id: str) -> Clone:
        clone = self.database(branch_id)
        with self.connect() as con:
            con.execute(motherduck_create_sql(self.prod, clone))
            for statement in marker_sql(clone):
                con.execute(statement, [branch_id, motherduck.location(self.prod)] if "?" in statement else None)
            marker = read_marker(con, clone)
        return Clone(branch_id, motherduck.location(clone), marker[1] if marker else None)

    def _marker(self, con: duckdb.DuckDBPyConnection, clone: str, branch_id: str | None) -> tuple[str, datetime] | None:
        marker = read_marker(con, clone)
        if marker is None or (branch_id is not None and marker[0] != branch_id):
            return None
        return marker

    def drop(self, branch_id: str) -> bool:
        clone = self.database(branch_id)
        if clone == self.prod:
            raise ProdWriteRefused(f"md:{clone} is the prod warehouse (ELT_PROD_DATABASE): a branch never drops it")
        with self.connect() as con:
            if clone not in {row[0] for row in con.execute("select database_name from duckdb_databases()").fetchall()}:
                return False
            if self._marker(con, clone, branch_id) is None:
                raise _not_a_clone(motherduck.location(clone), branch_id)
            con.execute(motherduck_drop_sql(clone))
        return True

    def list(self) -> list[Clone]:
        pattern = self.prefix.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "%"
        with self.connect() as con:
            clones = []
            for (clone,) in con.execute(motherduck_list_sql(), [pattern]).fetchall():
                marker = self._marker(con, clone, None)
                branch_id = marker[0] if marker else clone.removeprefix(self.prefix)
                clones.append(Clone(branch_id, motherduck.location(clone), marker[1] if marker else None))
        return clones


def clone_store(env: Environment, lock_wait_seconds: float = 300.0) -> LocalClones | MotherDuckClones:
    """The clones of this environment's prod warehouse."""
    if not env.prod_warehouse:
        raise EnvironmentConfigError("branches are clones of prod: set ELT_PROD_DATABASE to `md:<database>` or a file")
    if motherduck.is_motherduck(env.prod_warehouse):
        return MotherDuckClones(env.prod_warehouse)
    return LocalClones(Path(env.prod_warehouse), env.data_dir, lock_wait_seconds)


@dataclass(frozen=True)
class SweepDecision:
    clone: Clone
    drop: bool
    reason: str


def sweep_decisions(
    clones: list[Clone], open_ids: set[str] | None, max_age: timedelta, now: datetime | None = None
) -> list[SweepDecision]:
    """Drop a clone whose PR is not open (when the open PRs are known) or that is older than `max_age`."""
    now = now or datetime.now(UTC)
    open_keys = None if open_ids is None else {_id_key(branch_id) for branch_id in open_ids}
    decisions = []
    for clone in clones:
        if clone.created_at is None:
            decisions.append(
                SweepDecision(clone, False, "no clone marker (not made by `elt branch create`, or in use)")
            )
        elif open_keys is not None and _id_key(clone.branch_id) not in open_keys:
            decisions.append(SweepDecision(clone, True, "its PR is not open"))
        elif now - clone.created_at > max_age:
            decisions.append(
                SweepDecision(
                    clone, True, f"created {clone.created_at:%Y-%m-%d %H:%M} UTC, over {max_age.days} days ago"
                )
            )
        else:
            decisions.append(SweepDecision(clone, False, "open and recent"))
    return decisions


def _id_key(branch_id: str) -> str:
    """MotherDuck names spell '-' as '_'; compare ids the same way."""
    return branch_id.replace("-", "_")


def sweep(
    env: Environment, open_ids: set[str] | None, max_age: timedelta, dry_run: bool = False
) -> list[SweepDecision]:
    """Drop leftover clones of this prod; returns every clone with what was decided and why."""
    store = clone_store(env)
    decisions = sweep_decisions(store.list(), open_ids, max_age)
    if not dry_run:
        for decision in decisions:
            if decision.drop:
                store.drop(decision.clone.branch_id)
    return decisions
