"""The shop slice: PostgreSQL `data.*` -> Sling -> `raw_shop.*` in the warehouse."""
