"""Open an HTML page in headless Chromium: a screenshot, and which images actually loaded (for the report tests)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

__all__ = ["chromium", "screenshot", "loaded_dom"]

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]

# Marks every <img> with whether the browser decoded it, once the page has loaded.
_PROBE = ("<script>window.addEventListener('load', () => { for (const img of document.images) "
          "{ img.dataset.loaded = String(img.complete && img.naturalWidth > 0); } "
          "document.body.dataset.probed = 'yes'; });</script>")


def chromium() -> str | None:
    """The Chromium executable on PATH (Debian's ``chromium``), or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def _run(page: Path, work: Path, *flags: str, timeout: int = 120) -> subprocess.CompletedProcess:
    command = [chromium(), *FLAGS, f"--user-data-dir={work / 'profile'}", *flags, page.resolve().as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=work)


def screenshot(page: Path, out: Path, work: Path, width: int = 1200, height: int = 900) -> Path:
    """A ``width``×``height`` PNG of the top of ``page``."""
    result = _run(page, work, f"--screenshot={out}", f"--window-size={width},{height}")
    if not out.is_file():
        raise RuntimeError(f"chromium wrote no screenshot of {page}: {result.stderr[-2000:]}")
    return out


def loaded_dom(page: Path, work: Path) -> str:
    """The DOM of a copy of ``page`` after its load event, each <img> carrying data-loaded="true|false"."""
    probed = work / f"probed-{page.name}"
    probed.write_text(re.sub("</body>", _PROBE + "</body>", page.read_text(encoding="utf-8"), count=1), encoding="utf-8")
    result = _run(probed, work, "--dump-dom", "--virtual-time-budget=10000")
    if 'data-probed="yes"' not in result.stdout:
        raise RuntimeError(f"chromium did not finish loading {page}: {result.stderr[-2000:]}")
    return result.stdout
