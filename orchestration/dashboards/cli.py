"""`elt dashboards build` and `elt dashboards dev`: the Evidence site on the resolved environment's warehouse."""

import os

import click

from orchestration.dashboards import site
from orchestration.lib.environment import EnvironmentConfigError, resolve


@click.group()
def dashboards() -> None:
    """The Evidence dashboards (dashboards/) over the marts of this environment's warehouse."""


@dashboards.command()
def build() -> None:
    """Run the source queries and build the static site under <ELT_DATA_DIR>/dashboards/<env>/site."""
    try:
        env = resolve()
        click.echo(f"dashboards: building on the {env.name} warehouse {env.warehouse}")
        built = site.build(env)
    except (EnvironmentConfigError, site.DashboardsError) as error:
        raise click.ClickException(str(error)) from error
    npm = "npm ci ran; " if built.npm_installed else ""
    click.echo(
        f"dashboards: {len(built.pages)} page(s), {len(built.source_queries)} source quer(ies) "
        f"({npm}{built.seconds:.1f} s) -> {built.site}"
    )


@dashboards.command()
@click.option("--port", default=3100, show_default=True, help="Port of the dev server (on 127.0.0.1).")
def dev(port: int) -> None:
    """Serve the dashboards with live reload: edits to dashboards/pages/ show at once (from a working copy)."""
    try:
        command, variables, folder = site.dev_command(resolve(), port=port)
    except (EnvironmentConfigError, site.DashboardsError) as error:
        raise click.ClickException(str(error)) from error
    os.chdir(folder)
    os.execve(command[0], command, variables)
