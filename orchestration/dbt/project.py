"""The dbt project as Dagster sees it, with a manifest that is re-parsed whenever the project changed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dagster_dbt import DbtProject

from orchestration.environment import DBT_PROJECT_DIR, REPO_ROOT

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=REPO_ROOT)
_IGNORED = {"target", "logs", "dbt_packages"}


def _newest_source_mtime() -> float:
    newest = (REPO_ROOT / "profiles.yml").stat().st_mtime
    for root, dirs, files in os.walk(DBT_PROJECT_DIR):
        dirs[:] = [d for d in dirs if d not in _IGNORED]
        for name in files:
            newest = max(newest, os.stat(os.path.join(root, name)).st_mtime)
    return newest


def ensure_manifest() -> Path:
    """Parse the project when the manifest is missing or older than any project file (no warehouse needed)."""
    manifest = dbt_project.manifest_path
    if manifest.exists() and manifest.stat().st_mtime >= _newest_source_mtime():
        return manifest
    dbt = Path(sys.executable).parent / "dbt"
    result = subprocess.run(
        [
            str(dbt),
            "parse",
            "--quiet",
            "--project-dir",
            str(DBT_PROJECT_DIR),
            "--profiles-dir",
            str(REPO_ROOT),
            "--target",
            "dev",
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "ELT_ENV": "dev"},
    )
    if result.returncode != 0:
        raise RuntimeError(f"dbt parse of {DBT_PROJECT_DIR} failed:\n{result.stdout}\n{result.stderr}")
    return manifest
