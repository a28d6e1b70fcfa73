"""A screenshot of the documentation site's landing page -> docs/site_landing.png.

    pip install -e ".[docs]"            # and a Chromium: apt-get install chromium (Debian), or pass --browser
    python scripts/site_screenshot.py

Builds the site with mkdocs into a temporary folder and has headless Chromium render its index.html at the
given window size (no network: the site's assets are local).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import tyro


@dataclass
class Args:
    output: Path = Path("docs/site_landing.png")
    """where the PNG goes"""
    browser: str = "chromium"
    """the Chromium (or Chrome) executable"""
    width: int = 1280
    height: int = 1000


def main(args: Args) -> Path:
    browser = shutil.which(args.browser)
    if browser is None:
        raise SystemExit(
            f"no {args.browser!r} on PATH: install Chromium (Debian: apt-get install chromium) or pass --browser"
        )
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        subprocess.run(["mkdocs", "build", "--quiet", "--site-dir", str(site)], check=True)
        profile = Path(tmp) / "profile"
        subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
             f"--user-data-dir={profile}", f"--window-size={args.width},{args.height}",
             f"--screenshot={args.output.resolve()}", (site / "index.html").as_uri()],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
    print(f"wrote {args.output}")
    return args.output


if __name__ == "__main__":
    main(tyro.cli(Args))
