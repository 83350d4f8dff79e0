"""Screenshots of the `mtkit serve` page, taken by headless Chromium as the browser test drives it.

Usage:
    python scripts/serve_screenshot.py --run runs/bible_rnnsearch [--run runs/bible_rnnencdec] \
        --sentence "Y dijo Dios: Sea la luz: y fué la luz." --hover 3 --out docs/serve_translate.png \
        [--step 4 --step-out docs/serve_step.png] [--bucket 41-50 --length-out docs/serve_length.png]

Starts the app on a free loopback port in this process, types the sentence, translates, hovers
target word number --hover (0-based) of the first model and saves the page; optionally the
step-through at --step and the BLEU-by-length view with the examples of --bucket. Needs
Debian's chromium (MTKIT_CHROMIUM to point elsewhere) and the playwright package.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mtkit.serve.app import background, make_app

CHROMIUM = os.environ.get("MTKIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="append", required=True, help="run directory (repeatable)")
    parser.add_argument("--sentence", required=True, help="source sentence to translate")
    parser.add_argument("--beam", type=int, help="beam size (default: each run's)")
    parser.add_argument("--hover", type=int, default=0, help="target word of the first model to hover (0-based)")
    parser.add_argument("--out", type=Path, required=True, help="PNG of the translate view")
    parser.add_argument("--step", type=int, help="also show the step-through at this step (1-based)")
    parser.add_argument("--step-out", type=Path, help="PNG of the step-through")
    parser.add_argument("--bucket", help="also open the BLEU-by-length view with this bucket's examples")
    parser.add_argument("--length-out", type=Path, help="PNG of the BLEU-by-length view")
    parser.add_argument("--width", type=int, default=1600, help="browser window width in pixels")
    args = parser.parse_args()
    if not Path(CHROMIUM).is_file():
        sys.exit(f"error: no browser at {CHROMIUM}; apt-get install chromium (or set MTKIT_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    with background(make_app(args.run)) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": args.width, "height": 1000}, device_scale_factor=1)
        page.on("pageerror", lambda err: print(f"page error: {err}", file=sys.stderr))
        page.goto(url)
        page.wait_for_selector("#pick-bucket option", state="attached")
        page.fill("#source", args.sentence)
        if args.beam:
            page.fill("#beam", str(args.beam))
        page.click("#translate")
        for run in page.locator(".model").evaluate_all("ms => ms.map(m => m.dataset.run)"):
            page.wait_for_selector(f'.model[data-run="{run}"] .translation', timeout=120_000)
        first = page.locator(".model:has(svg.align)").first
        words = first.locator("svg.align text.word.t")
        if words.count():
            words.nth(min(args.hover, words.count() - 1)).hover()
        page.wait_for_timeout(300)
        page.screenshot(path=str(args.out), full_page=True)
        print(f"wrote {args.out}")
        if args.step and args.step_out:
            page.mouse.move(2, 2)
            first.locator("button.next").click()
            for _ in range(args.step - 1):
                page.keyboard.press("ArrowRight")
            page.wait_for_timeout(300)
            page.screenshot(path=str(args.step_out), full_page=True)
            print(f"wrote {args.step_out}")
        if args.bucket and args.length_out:
            page.click("#tab-length")
            page.wait_for_selector(f'.bucket-hit[data-bucket="{args.bucket}"]')
            page.locator(f'.bucket-hit[data-bucket="{args.bucket}"]').click()
            page.wait_for_selector(".example", timeout=120_000)
            page.mouse.move(2, 2)
            page.screenshot(path=str(args.length_out), full_page=True)
            print(f"wrote {args.length_out}")
        browser.close()


if __name__ == "__main__":
    main()
