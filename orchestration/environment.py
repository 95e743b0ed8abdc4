"""The environment model: which env this process is (dev / branch / prod), which warehouse it writes, and why.

This is the only module that reads `ELT_*` and Dagster+ deployment variables. Everything that needs a location
(dlt destination, Sling target, dbt target, Dagster resources) takes it from `resolve()`. `profiles.yml` reads the
same variables with the same defaults; `tests/test_environment.py` checks that the two agree.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
ENVIRONMENTS = ("dev", "branch", "prod")
MOTHERDUCK_PREFIX = "md:"
_BRANCH_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")


class EnvironmentConfigError(RuntimeError):
    """A setting is missing or contradicts another; the message names the variable to fix."""


class ProdWriteRefused(EnvironmentConfigError):
    """A dev or branch process was pointed at the prod warehouse."""


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
        return self.warehouse.startswith(MOTHERDUCK_PREFIX)

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


def _normalize(location: str) -> str:
    """An absolute file path, or `md:<name>` unchanged."""
    if location.startswith(MOTHERDUCK_PREFIX):
        return location
    path = Path(location).expanduser()
    if not path.is_absolute():
        path = REPO_ROOT / path
    return str(path.resolve())


def branch_warehouse(prod_warehouse: str | None, branch_id: str, data_dir: Path) -> str:
    """Where the clone of prod for `branch_id` lives: `md:<prod>_clone_<id>` or a file under the data dir."""
    if prod_warehouse and prod_warehouse.startswith(MOTHERDUCK_PREFIX):
        return f"{prod_warehouse}_clone_{branch_id.replace('-', '_')}"
    return str(data_dir / "warehouse" / "branches" / f"{branch_id}.duckdb")


def resolve(environ: Mapping[str, str] | None = None) -> Environment:
    """Resolve the environment from variables (default: os.environ). Raises with the variable at fault."""
    environ = os.environ if environ is None else environ
    reasons: list[str] = []

    data_dir = Path(_normalize(environ.get("ELT_DATA_DIR") or "data"))
    prod_raw = environ.get("ELT_PROD_DATABASE") or None
    prod = _normalize(prod_raw) if prod_raw else None

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
        if not _BRANCH_ID.match(branch_id):
            raise EnvironmentConfigError(f"{var}={branch_id!r}: use letters, digits, '-' or '_' (at most 63)")
        warehouse = branch_warehouse(prod, branch_id, data_dir)
        reasons.append(f"branch id from {var}; warehouse is the clone of prod for that id")
    else:
        if environ.get("ELT_DEV_DATABASE"):
            warehouse = _normalize(environ["ELT_DEV_DATABASE"])
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
    return env


def open_for_write(env: Environment, location: str) -> str:
    """Check a location a writer is about to open; returns it normalized. A dev or branch process never writes
    the prod warehouse, whatever the settings say."""
    target = _normalize(location)
    if env.name != "prod" and env.prod_warehouse and target == env.prod_warehouse:
        setting = "ELT_DEV_DATABASE" if env.name == "dev" else "ELT_BRANCH_ID"
        raise ProdWriteRefused(
            f"refusing to write the prod warehouse {target} from the {env.name} environment: it is "
            f"ELT_PROD_DATABASE; point {setting} at another database, or run with ELT_ENV=prod"
        )
    return target


@dataclass(frozen=True)
class SourceSettings:
    """Where each source is. Unset means the bundled demo: sample CSVs, NeoWs replay server, demo PostgreSQL."""

    files_drop_location: str
    shop_postgres_url: str | None
    nasa_base_url: str | None
    nasa_api_key_env: str | None  # the name of the variable holding the key, never the key itself
    nasa_start_date: str = "2018-09-05"  # the first NeoWs daily partition; the default is the first demo day

    @property
    def uses_demo(self) -> dict[str, bool]:
        return {
            "files": self.files_drop_location == str(DEMO_DROPS),
            "nasa": not (self.nasa_api_key_env or self.nasa_base_url),
            "shop": not self.shop_postgres_url,
        }


DEMO_DROPS = REPO_ROOT / "extract" / "files" / "demo_drops"


def source_settings(environ: Mapping[str, str] | None = None) -> SourceSettings:
    environ = os.environ if environ is None else environ
    drops = environ.get("ELT_FILES_DROP_DIR")
    return SourceSettings(
        # a local folder is normalized; an object-store URL (s3://bucket/prefix) is kept as given
        files_drop_location=(drops if "://" in drops else _normalize(drops)) if drops else str(DEMO_DROPS),
        shop_postgres_url=environ.get("ELT_SHOP_POSTGRES_URL") or None,
        nasa_base_url=environ.get("ELT_NASA_BASE_URL") or None,
        nasa_api_key_env="NASA_API_KEY" if environ.get("NASA_API_KEY") else None,
        nasa_start_date=_iso_date("ELT_NASA_START_DATE", environ) or SourceSettings.nasa_start_date,
    )


def _iso_date(variable: str, environ: Mapping[str, str]) -> str | None:
    """The variable as a `YYYY-MM-DD` date, None when unset."""
    value = (environ.get(variable) or "").strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise EnvironmentConfigError(f"{variable}={value!r} is not a date: use YYYY-MM-DD") from None
