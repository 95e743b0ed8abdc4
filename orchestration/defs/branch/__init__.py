"""The branch slice: Dagster jobs and a schedule over the branch library (`orchestration/branch/`)."""
