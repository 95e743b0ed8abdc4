"""The real headless browser for anything a user looks at: Debian's `chromium`, driven by Playwright for Python with
`executable_path` (Playwright's own browser download needs the internet). `.ci/run` installs `chromium` when missing.

Screenshots go to `ELT_TEST_ARTIFACTS` (default `test-artifacts/` in the checkout, git-ignored), where a CI job's test
report can pick them up."""

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

ARTIFACTS = Path(os.environ.get("ELT_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    raise RuntimeError("no chromium on PATH: `apt-get install chromium` (.ci/run does this on a fresh machine)")


@pytest.fixture(scope="session")
def browser() -> Iterator["playwright.sync_api.Browser"]:  # noqa: F821
    """One headless Chromium per test session; each test opens its own context (`browser.new_page()`)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot as `<ARTIFACTS>/<name>.png` and return its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
