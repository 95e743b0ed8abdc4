"""The environment model: resolution for each combination of variables, the prod-write guard, and profiles.yml
resolving the same warehouse through dbt's own renderer."""

import os
from argparse import Namespace
from pathlib import Path

import pytest

from orchestration.lib.environment import (
    DBT_PROJECT_DIR,
    REPO_ROOT,
    DataDirNotWritable,
    EnvironmentConfigError,
    ProdWriteRefused,
    open_for_write,
    resolve,
)
from orchestration.lib.instance import prepare_dagster_home
from orchestration.lib.warehouse import WarehouseResource
from tests.support import manifest

CASES = [
    # (variables, expected env, expected warehouse relative to data dir or md:, why)
    ({}, "dev", "{data}/warehouse/dev.duckdb"),
    ({"ELT_DEV_DATABASE": "{tmp}/mine.duckdb"}, "dev", "{tmp}/mine.duckdb"),
    ({"ELT_DEV_DATABASE": "md:dev_alice"}, "dev", "md:dev_alice"),
    ({"ELT_ENV": "branch", "ELT_BRANCH_ID": "42"}, "branch", "{data}/warehouse/branches/42.duckdb"),
    (
        {"ELT_ENV": "branch", "ELT_BRANCH_ID": "pr-7", "ELT_PROD_DATABASE": "md:analytics"},
        "branch",
        "md:analytics_clone_pr_7",
    ),
    (
        {"DAGSTER_CLOUD_IS_BRANCH_DEPLOYMENT": "1", "DAGSTER_CLOUD_PULL_REQUEST_ID": "99"},
        "branch",
        "{data}/warehouse/branches/99.duckdb",
    ),
    ({"ELT_ENV": "prod", "ELT_PROD_DATABASE": "{tmp}/prod.duckdb"}, "prod", "{tmp}/prod.duckdb"),
    ({"ELT_ENV": "prod", "ELT_PROD_DATABASE": "md:analytics"}, "prod", "md:analytics"),
    ({"DAGSTER_CLOUD_DEPLOYMENT_NAME": "prod", "ELT_PROD_DATABASE": "md:analytics"}, "prod", "md:analytics"),
    # an explicit ELT_ENV wins over Dagster+ variables
    ({"ELT_ENV": "dev", "DAGSTER_CLOUD_DEPLOYMENT_NAME": "prod"}, "dev", "{data}/warehouse/dev.duckdb"),
]


def _fill(variables: dict[str, str], tmp_path: Path) -> dict[str, str]:
    data = tmp_path / "data"
    return {"ELT_DATA_DIR": str(data), **{k: v.format(tmp=tmp_path, data=data) for k, v in variables.items()}}


@pytest.mark.parametrize(("variables", "name", "warehouse"), CASES)
def test_resolution(variables, name, warehouse, tmp_path):
    env = resolve(_fill(variables, tmp_path))
    assert env.name == name
    assert env.dbt_target == name
    assert env.warehouse == warehouse.format(tmp=tmp_path, data=tmp_path / "data")
    assert env.reasons, "resolution must say why"


@pytest.mark.parametrize(("variables", "name", "warehouse"), CASES)
def test_profiles_yml_agrees_with_environment_module(variables, name, warehouse, tmp_path, monkeypatch):
    """dbt renders profiles.yml with the same variables and must land on the same warehouse."""
    variables = _fill(variables, tmp_path)
    for key in ("ELT_ENV", "ELT_DEV_DATABASE", "ELT_BRANCH_ID", "ELT_PROD_DATABASE", "ELT_DATA_DIR"):
        monkeypatch.delenv(key, raising=False)
    env = resolve(variables)
    # dbt reads only ELT_* variables: the environment module hands them over for Dagster+ cases too
    for key, value in env.env_for_subprocess().items():
        monkeypatch.setenv(key, value)
    profile = _render_profile()
    assert profile.target_name == env.dbt_target
    assert str(profile.credentials.path) == env.warehouse


def _render_profile():
    """profiles.yml rendered by dbt's own renderer with this process's environment, as `dbt` reads it."""
    import os

    from dbt.config.profile import Profile, read_profile
    from dbt.config.renderer import ProfileRenderer
    from dbt.flags import set_from_args
    from dbt_common.context import set_invocation_context

    set_from_args(Namespace(), None)
    set_invocation_context(dict(os.environ))
    return Profile.from_raw_profiles(read_profile(str(REPO_ROOT)), "elt_platform", ProfileRenderer({}))


@pytest.mark.parametrize(
    ("dev", "pwd"),
    [
        ("{prod}", "/"),
        ("./{relative}", "{project}"),  # `cd dbt_project && dbt build`
        ("{project}/../dbt_project/{relative}", "/"),  # through `..`
        ("{tmp}/./warehouse//prod.duckdb", "/"),
        ("warehouse/prod.duckdb", "{tmp}"),
    ],
)
def test_profiles_yml_refuses_a_dev_target_on_prod_before_dbt_opens_it(dev, pwd, tmp_path, monkeypatch):
    """The dev target's path does not render when it is ELT_PROD_DATABASE, so dbt-duckdb never opens (creates)
    the file; tests/faults/test_settings_faults.py runs dbt itself."""
    prod = tmp_path / "warehouse" / "prod.duckdb"
    fill = {
        "prod": prod,
        "tmp": tmp_path,
        "project": DBT_PROJECT_DIR,
        "relative": Path(os.path.relpath(prod, DBT_PROJECT_DIR)),
    }
    for key in ("ELT_ENV", "ELT_DEV_DATABASE", "ELT_BRANCH_ID", "ELT_PROD_DATABASE", "ELT_DATA_DIR"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("ELT_PROD_DATABASE", str(prod))
    monkeypatch.setenv("ELT_DEV_DATABASE", dev.format(**fill))
    monkeypatch.setenv("PWD", pwd.format(**fill))
    with pytest.raises(Exception, match="refusing to write the prod warehouse .* ELT_DEV_DATABASE") as refused:
        _render_profile()
    assert "point ELT_DEV_DATABASE at another database" in str(refused.value)


@pytest.mark.parametrize(
    "variables",
    [
        {"ELT_DEV_DATABASE": "{tmp}/dev.duckdb", "ELT_PROD_DATABASE": "{tmp}/prod.duckdb"},
        {"ELT_DEV_DATABASE": "prod.duckdb", "ELT_PROD_DATABASE": "{tmp}/prod.duckdb"},  # PWD is not tmp
        {"ELT_DEV_DATABASE": "md:dev_alice", "ELT_PROD_DATABASE": "md:analytics"},
        {"ELT_ENV": "prod", "ELT_DEV_DATABASE": "{tmp}/prod.duckdb", "ELT_PROD_DATABASE": "{tmp}/prod.duckdb"},
    ],
)
def test_profiles_yml_renders_a_dev_target_that_is_not_prod(variables, tmp_path, monkeypatch):
    for key in ("ELT_ENV", "ELT_DEV_DATABASE", "ELT_BRANCH_ID", "ELT_PROD_DATABASE", "ELT_DATA_DIR"):
        monkeypatch.delenv(key, raising=False)
    for key, value in variables.items():
        monkeypatch.setenv(key, value.format(tmp=tmp_path))
    monkeypatch.setenv("PWD", str(REPO_ROOT))
    profile = _render_profile()
    expected = variables["ELT_PROD_DATABASE" if variables.get("ELT_ENV") == "prod" else "ELT_DEV_DATABASE"]
    assert str(profile.credentials.path) == expected.format(tmp=tmp_path)


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"ELT_ENV": "staging"}, "ELT_ENV='staging' is not one of dev, branch, prod"),
        ({"ELT_ENV": "prod"}, "set ELT_PROD_DATABASE"),
        ({"ELT_ENV": "branch"}, "set ELT_BRANCH_ID"),
        ({"ELT_ENV": "branch", "ELT_BRANCH_ID": "../../prod"}, "ELT_BRANCH_ID='../../prod'"),
    ],
)
def test_bad_settings_name_the_variable(variables, message, tmp_path):
    with pytest.raises(EnvironmentConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        resolve(_fill(variables, tmp_path))


def test_dev_refuses_to_write_prod(tmp_path):
    prod = tmp_path / "prod.duckdb"
    with pytest.raises(ProdWriteRefused, match="refusing to write the prod warehouse"):
        resolve({"ELT_DEV_DATABASE": str(prod), "ELT_PROD_DATABASE": str(prod)})
    # the same file through another spelling (relative path, symlink) is still prod
    (tmp_path / "alias.duckdb").symlink_to(prod)
    with pytest.raises(ProdWriteRefused):
        resolve({"ELT_DEV_DATABASE": str(tmp_path / "alias.duckdb"), "ELT_PROD_DATABASE": str(prod)})


def test_dev_and_branch_writers_refuse_prod(tmp_path):
    prod = str(tmp_path / "prod.duckdb")
    for variables in ({}, {"ELT_ENV": "branch", "ELT_BRANCH_ID": "1"}):
        env = resolve({**variables, "ELT_DATA_DIR": str(tmp_path), "ELT_PROD_DATABASE": prod})
        with pytest.raises(ProdWriteRefused):
            open_for_write(env, prod)
        # the warehouse resource used by every extractor goes through the same guard
        resource = WarehouseResource(
            env_name=env.name, location=prod, prod_location=env.prod_warehouse, data_dir=str(env.data_dir)
        )
        with pytest.raises(ProdWriteRefused):
            resource.checked_location()
    assert not Path(prod).exists(), "a refused write must not even create the prod file"
    prod_env = resolve({"ELT_ENV": "prod", "ELT_PROD_DATABASE": prod, "ELT_DATA_DIR": str(tmp_path)})
    assert open_for_write(prod_env, prod) == prod


def test_dbt_refuses_to_build_dev_on_prod(tmp_path):
    """The on-run-start guard in dbt refuses a dev target pointed at the prod file, even without Python."""
    import os
    import subprocess
    import sys

    prod = str(tmp_path / "prod.duckdb")
    dbt = Path(sys.executable).parent / "dbt"
    model = min(node["name"] for node in manifest()["nodes"].values() if node["resource_type"] == "model")
    result = subprocess.run(
        [str(dbt), "run", "--project-dir", "dbt_project", "--select", model],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "ELT_ENV": "dev", "ELT_DEV_DATABASE": prod, "ELT_PROD_DATABASE": prod},
    )
    assert result.returncode != 0
    assert "refusing to write the prod warehouse" in result.stdout + result.stderr


@pytest.mark.parametrize(
    "variables",
    [{}, {"ELT_ENV": "branch", "ELT_BRANCH_ID": "pr-3", "ELT_PROD_DATABASE": "md:analytics"}],
    ids=["dev", "branch"],
)
def test_the_warehouse_resource_carries_the_environment_whole(variables, tmp_path):
    env = resolve({**variables, "ELT_DATA_DIR": str(tmp_path)})
    assert WarehouseResource.from_environment(env).environment == env  # branch id and reasons included


def test_a_branch_derived_from_prod_is_what_a_branch_process_resolves(tmp_path):
    from orchestration.lib.environment import branch_of

    settings = {"ELT_DATA_DIR": str(tmp_path), "ELT_PROD_DATABASE": str(tmp_path / "prod.duckdb")}
    prod = resolve({**settings, "ELT_ENV": "prod"})
    derived = branch_of(prod, "42")
    resolved = resolve({**settings, "ELT_ENV": "branch", "ELT_BRANCH_ID": "42"})
    assert (derived.name, derived.warehouse, derived.branch_id, derived.prod_warehouse) == (
        resolved.name,
        resolved.warehouse,
        resolved.branch_id,
        resolved.prod_warehouse,
    )
    with pytest.raises(EnvironmentConfigError, match="ELT_BRANCH_ID"):
        branch_of(prod, "../x")


def test_a_data_dir_below_a_file_refuses_to_resolve(tmp_path):
    """A path below a regular file can be created by no user, root included; nothing is created to find out."""
    (tmp_path / "notes.txt").write_text("a file\n")
    data_dir = tmp_path / "notes.txt" / "data"
    with pytest.raises(DataDirNotWritable) as refused:
        resolve({"ELT_DATA_DIR": str(data_dir)})
    assert str(refused.value) == (
        f"ELT_DATA_DIR={data_dir} is not writable ({tmp_path / 'notes.txt'} is a file, not a folder): "
        "point ELT_DATA_DIR at a writable folder"
    )
    assert isinstance(refused.value, EnvironmentConfigError)  # what `elt` turns into one clean line
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write a read-only folder")
def test_a_read_only_data_dir_refuses_to_resolve(tmp_path):
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(DataDirNotWritable, match=f"ELT_DATA_DIR={tmp_path / 'data'} is not writable"):
            resolve({"ELT_DATA_DIR": str(tmp_path / "data")})
    finally:
        tmp_path.chmod(0o755)


def test_the_dagster_home_names_elt_data_dir_when_it_cannot_be_created(tmp_path, monkeypatch):
    """/proc takes no new folder from anyone, though access() grants root write there (so resolve() lets it pass):
    the instance folder is where `elt run` and `elt dev` first write."""
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    data_dir = Path(f"/proc/elt-data-{os.getpid()}")
    with pytest.raises(DataDirNotWritable, match=f"^ELT_DATA_DIR={data_dir} is not writable .*writable folder$"):
        prepare_dagster_home(data_dir / "dagster")
    assert "DAGSTER_HOME" not in os.environ
    home = prepare_dagster_home(tmp_path / "data" / "dagster")
    assert (home / "dagster.yaml").exists() and os.environ["DAGSTER_HOME"] == str(home)
    assert sorted(path.name for path in home.iterdir()) == ["dagster.yaml"]  # the write probe leaves nothing


@pytest.mark.parametrize("target", ["dev", "branch", "prod"])
@pytest.mark.parametrize(
    ("variables", "threads", "memory_limit"),
    [({}, 4, "1GB"), ({"ELT_DBT_THREADS": "1", "ELT_DUCKDB_MEMORY_LIMIT": "256MB"}, 1, "256MB")],
)
def test_profile_threads_and_memory_come_from_the_environment(
    target, variables, threads, memory_limit, tmp_path, monkeypatch
):
    """Every target's dbt threads and DuckDB memory limit follow ELT_DBT_THREADS / ELT_DUCKDB_MEMORY_LIMIT (the
    low-memory settings of docs/benchmarks.md), with 4 threads and 1GB when unset."""
    for key in ("ELT_DBT_THREADS", "ELT_DUCKDB_MEMORY_LIMIT", "ELT_DEV_DATABASE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("ELT_ENV", target)
    monkeypatch.setenv("ELT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ELT_BRANCH_ID", "7")
    monkeypatch.setenv("ELT_PROD_DATABASE", str(tmp_path / "prod.duckdb"))
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    profile = _render_profile()
    assert profile.target_name == target
    assert profile.threads == threads
    assert profile.credentials.settings["memory_limit"] == memory_limit


def test_the_warehouse_resources_connections_are_bounded(tmp_path, monkeypatch):
    """The platform's own connections (audit slots, publish) get the loads' DuckDB memory limit, read-only too,
    and do not clash with dlt's own connection to the same file in the same process."""
    monkeypatch.setenv("ELT_DLT_DUCKDB_MEMORY_LIMIT", "300MB")
    location = str(tmp_path / "w.duckdb")
    resource = WarehouseResource(env_name="dev", location=location, data_dir=str(tmp_path))
    with resource.connect() as con:
        assert con.execute("select current_setting('memory_limit')").fetchone()[0] == "286.1 MiB"
        with resource.dlt_pipeline("bounded", "raw_bounded").sql_client() as loader:
            assert loader.execute_sql("select current_setting('memory_limit')") == [("286.1 MiB",)]
    with resource.connect(read_only=True) as con:
        assert con.execute("select current_setting('memory_limit')").fetchone()[0] == "286.1 MiB"
