"""Name a PostgreSQL URL without leaking its password: a printable name, a reachability check, scrubbing."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import psycopg


class ShopPostgresUnreachable(RuntimeError):
    """The shop PostgreSQL did not answer; the message names host:port/db, never the password."""


def describe(url: str) -> str:
    """`host:port/db` of a PostgreSQL URL, safe to log."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 5432}{parts.path or '/'}"


def scrub(text: str, url: str) -> str:
    """Replace the URL's password (raw and URL-decoded) in `text`."""
    password = urlsplit(url).password
    for secret in {password, unquote(password)} if password else ():
        text = text.replace(secret, "***")
    return text


def check_reachable(url: str, timeout_seconds: int = 5) -> None:
    """Connect once, so an unreachable server fails early and clearly instead of with three Sling errors."""
    try:
        with psycopg.connect(url, connect_timeout=timeout_seconds):
            pass
    except psycopg.Error as error:
        raise ShopPostgresUnreachable(
            f"cannot connect to the shop PostgreSQL at {describe(url)}: {scrub(str(error), url).strip()}. "
            "Check ELT_SHOP_POSTGRES_URL (the shop_postgres resource's url), or unset it to use the demo database; "
            "the raw_shop tables were not touched."
        ) from None  # the chained error would repeat psycopg's message; this one is already scrubbed
