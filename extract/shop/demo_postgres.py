"""The shop's demo database: a local PostgreSQL (extract/local_postgres.py) whose superuser and database are both
`shop`, kept in the folder it is given. The shop seeds it (`extract/shop/seed.py`)."""

from __future__ import annotations

from extract.local_postgres import LocalPostgres

DB_USER = "shop"
DB_NAME = "shop"


class DemoPostgres(LocalPostgres):
    """Start (initdb and create `shop` once), expose `.url` (the `shop` database), stop on exit."""

    superuser = DB_USER
    database = DB_NAME
    label = "demo PostgreSQL"
