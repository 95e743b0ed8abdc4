"""PR branch targets as a library and the `elt branch` commands: clone prod into a branch warehouse, build it, diff
it against prod, drop it, sweep leftovers. No Dagster definitions live here: `orchestration/defs/branch/` wraps these
functions in jobs and a schedule."""
