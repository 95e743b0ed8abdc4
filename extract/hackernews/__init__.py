"""Hacker News items API (`/v0/item/<id>.json`): the dlt source, its generated demo feed and the local replay."""
