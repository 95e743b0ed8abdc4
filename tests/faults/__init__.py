"""The fault suite: bad input, crashes and broken settings, each asserting the clear error and that nothing was lost
or duplicated. CI runs it with the rest (`uv run pytest`); `uv run pytest tests/faults` runs it alone."""
