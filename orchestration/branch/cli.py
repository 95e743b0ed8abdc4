"""`elt branch ...`: the PR branch lifecycle (filled in by the branch-targets issue)."""

import click


@click.group()
def branch() -> None:
    """Clone prod for a pull request, build it, drop it, sweep leftovers."""
