#!/usr/bin/env bash
# What the container image does at build time, in one place: the Dockerfile RUNs it, and tests/test_deploy.py
# runs it in a temp copy of the repository (no container engine needed to test the image's steps).
#   deploy/build-image.sh [project dir, default: this repository]
# 1. install the locked dependencies with uv (uv.lock, no dev group, no resolution: `--frozen`);
# 2. prepare the dbt manifest (`dbt parse` through the platform's one dbt runner), so no process parses at start;
# 3. install DuckDB's httpfs from its wheel and check the binaries the wheels bring: Sling (sling-linux-amd64) and the DuckDB CLI (duckdb-cli), offline.
set -euo pipefail
cd "${1:-$(dirname "$0")/..}"

export UV_PROJECT_ENVIRONMENT="${UV_PROJECT_ENVIRONMENT:-$PWD/.venv}"
export DBT_SEND_ANONYMOUS_USAGE_STATS=false RUNTIME__DLTHUB_TELEMETRY=false DAGSTER_DISABLE_TELEMETRY=true
uv sync --frozen --no-dev --no-progress
python="$UV_PROJECT_ENVIRONMENT/bin/python"

# the manifest the code server loads (dbt_project/target/manifest.json); written for the dev target, which needs
# no warehouse to parse
ELT_DATA_DIR="$(mktemp -d)" "$python" -c '
from orchestration.lib.dbt import ensure_manifest
print("dbt manifest:", ensure_manifest())
'

"$python" - <<'PY'
import os
import subprocess

from extract.tooling import install_duckdb_extensions  # importing `extract` points SLING_BINARY, DUCKDB_PATH at
                                                       # the wheels' binaries
install_duckdb_extensions()  # httpfs from its wheel into ~/.duckdb: Sling's DuckDB CLI needs it, offline

for name, variable in (("sling", "SLING_BINARY"), ("duckdb", "DUCKDB_PATH")):
    binary = os.environ.get(variable)
    if not binary or not os.access(binary, os.X_OK):
        raise SystemExit(f"{name}: {variable}={binary!r} is not an executable binary from its wheel")
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60, check=True)
    print(f"{name}: {binary}: {version.stdout.strip().splitlines()[-1]}")
PY
