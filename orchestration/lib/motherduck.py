"""The one place that knows how a MotherDuck location is spelled: `md:<database>`, token in MOTHERDUCK_TOKEN."""

from __future__ import annotations

PREFIX = "md:"
WORKSPACE = PREFIX  # a connection to the workspace sees every database; the token comes from MOTHERDUCK_TOKEN


class MotherDuckLocationError(ValueError):
    """A MotherDuck location carries options (a token would leak into logs) or no database name."""


def is_motherduck(location: str) -> bool:
    return location.startswith(PREFIX)


def location(database: str) -> str:
    """`<database>` -> `md:<database>`."""
    return f"{PREFIX}{database}"


def database_name(location: str) -> str:
    """`md:<name>` -> `<name>`. A token in the location would leak into logs: it belongs in MOTHERDUCK_TOKEN."""
    name = location.removeprefix(PREFIX)
    if not is_motherduck(location) or not name or any(char in name for char in "?/&="):
        # not the location itself in the message: its options may hold the token
        raise MotherDuckLocationError(
            "a MotherDuck warehouse is `md:<database>` with no options; put the token in MOTHERDUCK_TOKEN"
        )
    return name
