"""Debian's Chromium for the browser tests (never a downloaded browser): where it is, the
flags every test starts it with, and the mark that skips a test where it is missing."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and os.access("/usr/bin/chromium", os.X_OK):
    CHROMIUM = "/usr/bin/chromium"

#: Headless, and nothing that would reach out of the machine on its own.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--mute-audio"]



@contextmanager
def launched():
    """Debian's Chromium started by Playwright (`executable_path`; `playwright install` is
    never run), closed after use."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


requires_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium or chromium-browser binary on PATH")
