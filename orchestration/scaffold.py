"""`elt new source NAME --kind rest|sql|files [--table TABLE]`: the skeleton of a new source in every layer.

It writes the extractor (`extract/<name>/`), the Dagster slice (`orchestration/defs/<name>/`, autoloaded), the dbt
staging models (`dbt_project/models/staging/<name>/`), a test (`tests/test_<name>.py`) and its fixtures
(`tests/fixtures_<name>.py`), and edits nothing: the slice binds its own resource, the dbt translator hangs the
staging model under the extract asset `raw_<name>/<table>`, and tests/conftest.py finds the fixtures by name.

Every source runs as soon as it is written: with its setting unset, it loads a small demo shipped in
`extract/<name>/`, offline and through the same path as the real thing. rest: made-up responses in `recorded/`
served by a replay server on 127.0.0.1 (`replay.py`, over extract/local_server.py); sql: a PostgreSQL started from
the `pgserver` wheel (extract/shop/demo_postgres.py) and seeded from `demo_seed/`, so Sling replicates it exactly as
it would a real database; files: sample CSV files in `demo_drops/`. The fixtures' `demo_row_counts(con)` derives
from those inputs what a demo run lands per raw table, which the end-to-end test checks with every other source's.

The files come from `orchestration/scaffold_templates/<layer>/`, trees that mirror the repository: the layer `common`
for every kind, then the kind's own (`rest`, `sql`, `files`; a file there replaces a `common` one at the same path).
In a path, the components `NAME` and `TABLE` become the source's name and table; a file's text (its name minus
`.tmpl`) is a `string.Template` over `${name}`, `${table}`, `${Name}` (CamelCase), `${NAME}` (upper case) and
`${table_fn}` (the table as a Python function name).
"""

from __future__ import annotations

import builtins
import keyword
import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

import click

from orchestration.lib.environment import REPO_ROOT

TEMPLATES = Path(__file__).with_name("scaffold_templates")
TEMPLATE_SUFFIX = ".tmpl"
KINDS = ("rest", "sql", "files")
DEFAULT_TABLE = "items"
MAX_IDENTIFIER_LENGTH = 30  # keeps every generated line within ruff's 120 columns
_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")
# names the generated modules use themselves: a table named like one gets a resource function `<table>_rows`
_TEMPLATE_NAMES = {
    "annotations",
    "backoff_factor",
    "base_url",
    "batch",
    "batch_rows",
    "changed",
    "client",
    "column",
    "con",
    "datetime",
    "dlt",
    "drop_dir",
    "duckdb",
    "file",
    "file_glob",
    "files",
    "filesystem",
    "handle",
    "loaded_at",
    "max_attempts",
    "max_retry_delay",
    "pa",
    "rows",
    "timeout",
    "url",
    "value",
    "values",
    "with_provenance",
}
# the package folders of a source; a module of the same name beside one (`extract/tooling.py`) would be shadowed
_PACKAGES = ("extract/{name}", "orchestration/defs/{name}")
_FOLDERS = (*_PACKAGES, "dbt_project/models/staging/{name}")
_REPO_MARKERS = ("orchestration/defs", "dbt_project/models/staging", "extract")


class ScaffoldError(click.ClickException):
    """The name is not usable, or the source (or something in its way) already exists: the message says which."""


def check_identifier(value: str, what: str) -> str:
    """`value` if it is a lowercase identifier that is safe in every layer, else a ScaffoldError saying why."""
    if not _IDENTIFIER.match(value):
        raise ScaffoldError(f"{what} {value!r} is not a lowercase identifier: use [a-z][a-z0-9_]* (e.g. `weather`)")
    if "__" in value or value.endswith("_"):
        raise ScaffoldError(
            f"{what} {value!r}: no `__` and no trailing `_`; `__` is the separator of dbt model names "
            "(`stg_<source>__<table>`) and of dlt child tables (`<table>__<field>`)"
        )
    if keyword.iskeyword(value) or keyword.issoftkeyword(value):
        raise ScaffoldError(f"{what} {value!r} is a Python keyword: it cannot name a package or function")
    if len(value) > MAX_IDENTIFIER_LENGTH:
        raise ScaffoldError(f"{what} {value!r} is longer than {MAX_IDENTIFIER_LENGTH} characters")
    return value


@dataclass(frozen=True)
class SourceScaffold:
    """A new source `name` of `kind`, with its first table `table`."""

    name: str
    kind: str
    table: str = DEFAULT_TABLE

    def __post_init__(self) -> None:
        check_identifier(self.name, "NAME")
        check_identifier(self.table, "TABLE")
        if self.kind not in KINDS:
            raise ScaffoldError(f"--kind {self.kind!r} is not one of {', '.join(KINDS)}")

    @property
    def variables(self) -> dict[str, str]:
        reserved = self.table in _TEMPLATE_NAMES or hasattr(builtins, self.table) or self.table == f"{self.name}_source"
        return {
            "name": self.name,
            "table": self.table,
            "Name": "".join(part.capitalize() for part in self.name.split("_")),
            "NAME": self.name.upper(),
            "table_fn": f"{self.table}_rows" if reserved else self.table,
        }

    def files(self) -> dict[str, str]:
        """Every file to write, `{path relative to the repository root: text}`, in path order."""
        variables = self.variables
        rendered: dict[str, str] = {}
        for layer in ("common", self.kind):
            root = TEMPLATES / layer
            for template in sorted(root.rglob(f"*{TEMPLATE_SUFFIX}")):
                parts = template.relative_to(root).with_suffix("").parts
                path = "/".join(part.replace("NAME", self.name).replace("TABLE", self.table) for part in parts)
                rendered[path] = Template(template.read_text()).substitute(variables)
        return dict(sorted(rendered.items()))

    def obstacles(self, repo_root: Path) -> list[str]:
        """What already exists where the source would go (paths relative to `repo_root`, folders with a `/`)."""
        found = [f"{folder}/" for folder in self._paths(_FOLDERS) if (repo_root / folder).exists()]
        found += [f"{package}.py" for package in self._paths(_PACKAGES) if (repo_root / f"{package}.py").exists()]
        models = sorted((repo_root / "dbt_project" / "models").rglob(f"stg_{self.name}__{self.table}.*"))
        for path in [*self.files(), *(str(model.relative_to(repo_root)) for model in models)]:
            if (repo_root / path).exists() and not any(path.startswith(f) for f in found if f.endswith("/")):
                found.append(path)
        return found

    def _paths(self, patterns: tuple[str, ...]) -> list[str]:
        return [pattern.format(name=self.name) for pattern in patterns]

    def write(self, repo_root: Path) -> list[str]:
        """Write every file under `repo_root`; refuses (writing nothing) when any of them, or its folder, exists."""
        missing = [marker for marker in _REPO_MARKERS if not (repo_root / marker).is_dir()]
        if missing:
            raise ScaffoldError(f"{repo_root} is not the platform's repository (no {', '.join(missing)}/)")
        obstacles = self.obstacles(repo_root)
        if obstacles:
            raise ScaffoldError(
                f"refusing to scaffold source {self.name!r}: already there: {', '.join(obstacles)}. "
                "Pick another name (or --table), or remove what is in the way."
            )
        files = self.files()
        for path, text in files.items():
            target = repo_root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        return list(files)

    def next_steps(self) -> list[str]:
        name, table, upper = self.name, self.table, self.name.upper()
        model = f"dbt_project/models/staging/{name}/stg_{name}__{table}.sql"
        if self.kind == "rest":
            demo = f"the responses in extract/{name}/recorded/ served by a local replay (extract/{name}/replay.py)"
            setup = [
                f"Point it at the API: export ELT_{upper}_BASE_URL=https://api.example.com/v1 "
                f"(the source GETs <base url>/{table}).",
                f"Shape the extract in extract/{name}/source.py: authentication, pagination, more resources; "
                f"record a real answer as extract/{name}/recorded/{table}.json for the demo.",
            ]
        elif self.kind == "files":
            demo = f"the sample CSV files in extract/{name}/demo_drops/"
            setup = [
                f"Point it at the drops: export ELT_{upper}_DROP_DIR=<folder or s3://bucket/prefix> "
                "(CSV files with an `id` column).",
            ]
        else:
            demo = f"a demo PostgreSQL seeded from extract/{name}/demo_seed/ (extract/{name}/demo.py)"
            setup = [
                f"Point it at the database: export ELT_{upper}_POSTGRES_URL=postgresql://user:password@host:5432/db "
                "(kept out of the definitions through dg.EnvVar).",
                f"In extract/{name}/replication.yaml, name the stream (public.{table}), its primary_key and "
                f"update_key; add a stream per table (and its demo table in extract/{name}/demo_seed/).",
            ]
        return [
            f"It runs now, offline: with no setting it loads {demo}. `elt run` includes it and lists "
            f"raw_{name}.{table} in its summary.",
            *setup,
            f"List the columns in {model} and describe them in _{name}__models.yml (and _{name}__sources.yml).",
            f"Keep the demo like the real source: tests/fixtures_{name}.py derives from it what a demo run lands "
            "(demo_row_counts), which tests/test_end_to_end.py checks with every other source.",
            f"Run its test: uv run pytest tests/test_{name}.py",
            f"In `elt dev`, materialize raw_{name}/{table} (job {name}_daily; its 06:00 UTC schedule runs by default "
            "in prod only).",
        ]


@click.group()
def new() -> None:
    """Scaffold a new piece of the platform in every layer."""


@new.command()
@click.argument("name")
@click.option("--kind", type=click.Choice(KINDS), required=True, help="How it is extracted.")
@click.option(
    "--table",
    default=DEFAULT_TABLE,
    show_default=True,
    help="Its first table: the REST resource (GET <base url>/<table>), the Sling stream public.<table>, or the "
    "table the CSV files load into.",
)
@click.option(
    "--repo-root",
    type=click.Path(file_okay=False, path_type=Path),
    default=REPO_ROOT,
    show_default=True,
    help="The repository to write into.",
)
def source(name: str, kind: str, table: str, repo_root: Path) -> None:
    """Scaffold source NAME (a lowercase identifier): extractor with a demo, Dagster slice, dbt staging model, a test
    and its fixtures.

    \b
    rest:  a dlt source GETting <base url>/<table> (ELT_<NAME>_BASE_URL), merged on `id`;
           unset, a local replay of recorded responses
    sql:   a Sling replication of PostgreSQL public.<table> (ELT_<NAME>_POSTGRES_URL), incremental;
           unset, a seeded demo PostgreSQL
    files: a dlt source over CSV files in a folder or s3:// URL (ELT_<NAME>_DROP_DIR), merged on `id`;
           unset, sample files

    Its asset is raw_<name>/<table>, the staging model stg_<name>__<table> hangs under it; nothing else is edited.
    With no settings it loads its demo, so `elt run` stays green.
    """
    scaffold = SourceScaffold(name=name, kind=kind, table=table)
    written = scaffold.write(repo_root)
    click.echo(f"Scaffolded {kind} source {name!r} (asset raw_{name}/{table}) in {repo_root}:")
    for path in written:
        click.echo(f"  created {path}")
    click.echo("Next:")
    for number, step in enumerate(scaffold.next_steps(), start=1):
        click.echo(f"  {number}. {step}")
