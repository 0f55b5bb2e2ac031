"""Headless Chromium for browser checks (the UI and report tests, the demo's UI step): where it is, and the flags it
needs in a container without a display, GPU or network (a sandbox-less, quiet headless browser)."""

from __future__ import annotations

import os

#: the Chromium executable (Debian's by default; ``HFVISION_CHROMIUM`` points elsewhere)
CHROMIUM = os.environ.get("HFVISION_CHROMIUM", "/usr/bin/chromium")
#: its command-line flags (Playwright: ``chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)``)
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
