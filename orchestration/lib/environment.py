"""The environment model: which env this process is (dev / branch / prod), which warehouse it writes, and why.

This is the only module that reads the variables that choose the environment and its warehouse (`ELT_ENV`,
`ELT_DATA_DIR`, `ELT_DEV_DATABASE`, `ELT_BRANCH_ID`, `ELT_PROD_DATABASE` and the Dagster+ deployment variables).
Everything that needs a location (dlt destination, Sling target, dbt target, Dagster resources) takes it from
`resolve()`, and passes the `Environment` on whole. Where a source is (`ELT_FILES_DROP_DIR`, `NASA_API_KEY`, ...)
is each slice's own setting, read by the slice's `resources.py`. `profiles.yml` reads the same variables with the
same defaults; `tests/test_environment.py` checks that the two agree.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from orchestration.lib import motherduck

REPO_ROOT = Path(__file__).resolve().parents[2]
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
ENVIRONMENTS = ("dev", "branch", "prod")
_BRANCH_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")


class EnvironmentConfigError(RuntimeError):
    """A setting is missing or contradicts another; the message names the variable to fix."""


class ProdWriteRefused(EnvironmentConfigError):
    """A dev or branch process was pointed at the prod warehouse."""


class DataDirNotWritable(EnvironmentConfigError):
    """`ELT_DATA_DIR` is a folder this process cannot create or write (every `elt` command that runs writes there)."""


@dataclass(frozen=True)
class Environment:
    name: str  # dev | branch | prod
    warehouse: str  # a DuckDB file path (absolute) or `md:<database>`
    data_dir: Path  # local run state: warehouses, dlt pipeline state, Dagster home
    branch_id: str | None = None
    prod_warehouse: str | None = None
    reasons: tuple[str, ...] = field(default_factory=tuple)

    @property
    def dbt_target(self) -> str:
        return self.name

    @property
    def is_motherduck(self) -> bool:
        return motherduck.is_motherduck(self.warehouse)

    @property
    def warehouse_path(self) -> Path:
        """The local warehouse file; only for file warehouses."""
        if self.is_motherduck:
            raise EnvironmentConfigError(f"warehouse {self.warehouse} is on MotherDuck, not a local file")
        return Path(self.warehouse)

    @property
    def dagster_home(self) -> Path:
        return self.data_dir / "dagster"

    @property
    def dlt_pipelines_dir(self) -> Path:
        return self.data_dir / "dlt" / self.name

    def env_for_subprocess(self) -> dict[str, str]:
        """Variables that make dbt (via profiles.yml) resolve exactly this environment."""
        env = {"ELT_ENV": self.name, "ELT_DATA_DIR": str(self.data_dir)}
        if self.name == "dev":
            env["ELT_DEV_DATABASE"] = self.warehouse
        if self.branch_id:
            env["ELT_BRANCH_ID"] = self.branch_id
        if self.prod_warehouse:
            env["ELT_PROD_DATABASE"] = self.prod_warehouse
        return env


def normalize_location(location: str) -> str:
    """An absolute file path (relative ones from the repository root), or `md:<name>` unchanged."""
    if motherduck.is_motherduck(location):
        return location
    path = Path(location).expanduser()
    if not path.is_absolute():
        path = REPO_ROOT / path
    return str(path.resolve())


def local_path_setting(variable: str, default: Path, environ: Mapping[str, str] | None = None) -> str:
    """A setting that holds a folder or an object-store URL (a slice's, e.g. `ELT_FILES_DROP_DIR`): a local path
    is made absolute (relative to the repository root), a URL (`s3://bucket/prefix`) is kept as given."""
    environ = os.environ if environ is None else environ
    value = (environ.get(variable) or "").strip()
    if not value:
        return str(default)
    return value if "://" in value else normalize_location(value)


def branch_warehouse(prod_warehouse: str | None, branch_id: str, data_dir: Path) -> str:
    """Where the clone of prod for `branch_id` lives: `md:<prod>_clone_<id>` or a file under the data dir."""
    if prod_warehouse and motherduck.is_motherduck(prod_warehouse):
        return f"{prod_warehouse}_clone_{branch_id.replace('-', '_')}"
    return str(data_dir / "warehouse" / "branches" / f"{branch_id}.duckdb")


def resolve(environ: Mapping[str, str] | None = None) -> Environment:
    """Resolve the environment from variables (default: os.environ). Raises with the variable at fault."""
    environ = os.environ if environ is None else environ
    reasons: list[str] = []

    data_dir = Path(normalize_location(environ.get("ELT_DATA_DIR") or "data"))
    prod_raw = environ.get("ELT_PROD_DATABASE") or None
    prod = normalize_location(prod_raw) if prod_raw else None

    explicit = (environ.get("ELT_ENV") or "").strip().lower()
    if explicit:
        if explicit not in ENVIRONMENTS:
            raise EnvironmentConfigError(f"ELT_ENV={explicit!r} is not one of {', '.join(ENVIRONMENTS)}")
        name = explicit
        reasons.append(f"ELT_ENV={explicit}")
    elif environ.get("DAGSTER_CLOUD_IS_BRANCH_DEPLOYMENT") == "1":
        name = "branch"
        reasons.append("DAGSTER_CLOUD_IS_BRANCH_DEPLOYMENT=1")
    elif environ.get("DAGSTER_CLOUD_DEPLOYMENT_NAME") == "prod":
        name = "prod"
        reasons.append("DAGSTER_CLOUD_DEPLOYMENT_NAME=prod")
    else:
        name = "dev"
        reasons.append("no ELT_ENV or Dagster+ deployment variable: dev is the default")

    branch_id = None
    if name == "prod":
        if not prod:
            raise EnvironmentConfigError(
                "prod needs its warehouse: set ELT_PROD_DATABASE to `md:<database>` or a DuckDB file path"
            )
        warehouse = prod
        reasons.append("warehouse from ELT_PROD_DATABASE")
    elif name == "branch":
        if environ.get("ELT_BRANCH_ID"):
            branch_id, var = environ["ELT_BRANCH_ID"], "ELT_BRANCH_ID"
        elif environ.get("DAGSTER_CLOUD_PULL_REQUEST_ID"):
            branch_id, var = environ["DAGSTER_CLOUD_PULL_REQUEST_ID"], "DAGSTER_CLOUD_PULL_REQUEST_ID"
        else:
            raise EnvironmentConfigError("branch needs an id: set ELT_BRANCH_ID (or DAGSTER_CLOUD_PULL_REQUEST_ID)")
        check_branch_id(branch_id, var)
        warehouse = branch_warehouse(prod, branch_id, data_dir)
        reasons.append(f"branch id from {var}; warehouse is the clone of prod for that id")
    else:
        if environ.get("ELT_DEV_DATABASE"):
            warehouse = normalize_location(environ["ELT_DEV_DATABASE"])
            reasons.append("warehouse from ELT_DEV_DATABASE")
        else:
            warehouse = str(data_dir / "warehouse" / "dev.duckdb")
            reasons.append("warehouse defaults to <ELT_DATA_DIR>/warehouse/dev.duckdb")

    env = Environment(
        name=name,
        warehouse=warehouse,
        data_dir=data_dir,
        branch_id=branch_id,
        prod_warehouse=prod,
        reasons=tuple(reasons),
    )
    open_for_write(env, env.warehouse)
    check_data_dir(data_dir)
    return env


def data_dir_not_writable(data_dir: Path, why: str) -> DataDirNotWritable:
    return DataDirNotWritable(
        f"ELT_DATA_DIR={data_dir} is not writable ({why}): point ELT_DATA_DIR at a writable folder"
    )


def check_data_dir(data_dir: Path) -> Path:
    """Refuse a data dir that cannot be created or written, without creating anything: the folder, or the nearest
    folder above it that exists, must be a folder this process may write (read-only mounts and permissions count;
    `instance.prepare_dagster_home` finds the rest when it first writes there)."""
    existing = data_dir
    try:
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
    except OSError as error:  # e.g. a folder above it this user may not even look into
        raise data_dir_not_writable(data_dir, f"{existing}: {error.strerror}") from None
    if not existing.is_dir():
        raise data_dir_not_writable(data_dir, f"{existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise data_dir_not_writable(data_dir, f"{existing} is read-only for this user")
    return data_dir


def check_branch_id(branch_id: str, setting: str = "ELT_BRANCH_ID") -> str:
    if not _BRANCH_ID.match(branch_id):
        raise EnvironmentConfigError(f"{setting}={branch_id!r}: use letters, digits, '-' or '_' (at most 63)")
    return branch_id


def branch_of(env: Environment, branch_id: str) -> Environment:
    """The branch environment of PR `branch_id` beside `env`'s prod (same data dir): the environment a process of
    that PR resolves, derived from an already resolved one (e.g. prod's sweep, or `elt branch create` in CI)."""
    if not env.prod_warehouse:
        raise EnvironmentConfigError("a branch is a clone of prod: set ELT_PROD_DATABASE to `md:<database>` or a file")
    check_branch_id(branch_id)
    branch = Environment(
        name="branch",
        warehouse=branch_warehouse(env.prod_warehouse, branch_id, env.data_dir),
        data_dir=env.data_dir,
        branch_id=branch_id,
        prod_warehouse=env.prod_warehouse,
        reasons=(f"branch {branch_id}: the clone of prod {env.prod_warehouse}", *env.reasons),
    )
    open_for_write(branch, branch.warehouse)
    return branch


def open_for_write(env: Environment, location: str) -> str:
    """Check a location a writer is about to open; returns it normalized. A dev or branch process never writes
    the prod warehouse, whatever the settings say."""
    target = normalize_location(location)
    if env.name != "prod" and env.prod_warehouse and target == env.prod_warehouse:
        setting = "ELT_DEV_DATABASE" if env.name == "dev" else "ELT_BRANCH_ID"
        raise ProdWriteRefused(
            f"refusing to write the prod warehouse {target} from the {env.name} environment: it is "
            f"ELT_PROD_DATABASE; point {setting} at another database, or run with ELT_ENV=prod"
        )
    return target


def iso_date_setting(variable: str, environ: Mapping[str, str] | None = None) -> str | None:
    """A setting that holds a `YYYY-MM-DD` date (a slice's, e.g. `ELT_NASA_START_DATE`); None when unset."""
    environ = os.environ if environ is None else environ
    value = (environ.get(variable) or "").strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise EnvironmentConfigError(f"{variable}={value!r} is not a date: use YYYY-MM-DD") from None
