"""The layers are a contract a tool checks (import-linter, `[tool.importlinter]` in pyproject.toml), not a
convention: extract knows no Dagster, slices don't import each other, shared modules import no slice."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from orchestration.lib.environment import REPO_ROOT

LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache"],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},  # the copy's packages win over the installed checkout
        capture_output=True,
        text=True,
    )


def test_the_code_keeps_every_contract():
    result = lint_imports(REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_crossing_import_breaks_its_contract(tmp_path):
    """The same contracts over a copy with three forbidden imports: each breaks the contract that names it."""
    for package in ("extract", "orchestration", "benchmarks"):
        shutil.copytree(REPO_ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path)
    (tmp_path / "extract" / "files" / "probe.py").write_text("import dagster\n")
    (tmp_path / "orchestration" / "defs" / "files" / "probe.py").write_text(
        "from orchestration.defs.nasa import partitions\n"
    )
    (tmp_path / "orchestration" / "lib" / "probe.py").write_text("import orchestration.defs.shop.assets\n")

    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "3 broken" in result.stdout, result.stdout
    for module in ("extract.files.probe", "orchestration.defs.files.probe", "orchestration.lib.probe"):
        assert module in result.stdout, result.stdout
