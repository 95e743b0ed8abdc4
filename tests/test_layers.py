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


def packages(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if (path / "__init__.py").is_file())


def dotted(module: Path, root: Path) -> str:
    return ".".join(module.relative_to(root).with_suffix("").parts)


def test_a_crossing_import_breaks_its_contract(tmp_path):
    """The same contracts over a copy with three forbidden imports, placed in whatever packages the copy has: each
    breaks the contract that names it."""
    for package in ("extract", "orchestration", "benchmarks"):
        shutil.copytree(REPO_ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path)
    extract_package = [*packages(tmp_path / "extract"), tmp_path / "extract"][0]
    slice_a, slice_b, *_ = packages(tmp_path / "orchestration" / "defs")  # the platform's own slices count too
    slice_b_module = dotted(min(path for path in slice_b.glob("*.py") if path.name != "__init__.py"), tmp_path)
    probes = {
        extract_package / "probe.py": "import dagster\n",
        slice_a / "probe.py": f"import {slice_b_module}\n",
        tmp_path / "orchestration" / "lib" / "probe.py": f"import {slice_b_module}\n",
    }
    for probe, code in probes.items():
        probe.write_text(code)

    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "3 broken" in result.stdout, result.stdout
    for probe in probes:
        assert dotted(probe, tmp_path) in result.stdout, (probe, result.stdout)
