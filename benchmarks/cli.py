"""`elt bench` (filled in by the benchmarks issue)."""

import click


@click.command()
def bench() -> None:
    """Benchmark the platform against its references and print a table of ratios."""
    raise click.ClickException("not implemented yet")
