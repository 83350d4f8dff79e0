"""Screenshots of the built site (make docs first): docs/site_home.png and docs/site_study.png, headless Chromium.

Usage: python scripts/gen_docs_screenshots.py [SITE_DIR]   (default: site/)
"""
import sys
from playwright.sync_api import sync_playwright
site = str(__import__("pathlib").Path(sys.argv[1] if len(sys.argv) > 1 else "site").resolve())
with sync_playwright() as p:
    b = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
    page = b.new_page(viewport={"width": 1280, "height": 800})
    for url, out in ((f"file://{site}/index.html", "docs/site_home.png"), (f"file://{site}/study/index.html", "docs/site_study.png")):
        page.goto(url); page.wait_for_timeout(800)
        page.screenshot(path=out)
    b.close()
