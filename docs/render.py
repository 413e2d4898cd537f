"""Render the documentation site to PNG with headless Chromium.

    python docs/render.py OUT_DIR [--width 1280] [--height 2000]

Builds the site (``mkdocs build --strict``) into a temporary directory, serves it on a
free loopback port (``http.server`` in a thread), opens the tutorial, one guide and one
API reference page in headless Chromium driven by selenium (Debian's ``chromium`` and
``chromium-driver``: ``apt-get install -y chromium chromium-driver``) and writes one
PNG per page to OUT_DIR (the top of the page, ``--height`` pixels tall).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The pages rendered: (PNG name, path in the site).
PAGES = [
    ("tutorial", "tutorial.html"),
    ("guide-schedules", "guides/schedules.html"),
    ("api-app", "reference/app.html"),
]


def build(site: Path) -> None:
    """``mkdocs build --strict`` into ``site``."""
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site)],
        cwd=ROOT,
        check=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(site: Path) -> http.server.ThreadingHTTPServer:
    """Serve ``site`` on a free loopback port, from a daemon thread."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def driver(width: int, height: int):  # type: ignore[no-untyped-def]
    """Headless Chromium through chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or ""
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
        "--hide-scrollbars",
    ):
        options.add_argument(arg)
    service = Service(executable_path=shutil.which("chromedriver") or "chromedriver")
    return webdriver.Chrome(options=options, service=service)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="directory for the PNGs")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=2000)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        build(site)
        server = serve(site)
        browser = driver(args.width, args.height)
        try:
            for name, path in PAGES:
                browser.get(f"http://127.0.0.1:{server.server_port}/{path}")
                browser.execute_script("return document.fonts.ready")
                png = args.out / f"{name}.png"
                browser.save_screenshot(str(png))
                print(png)
        finally:
            browser.quit()
            server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
