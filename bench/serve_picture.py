"""The attention page's picture for the docs: serve a model, type a sentence into the page in
headless Chromium, hover a cell, and save the screenshot.

    python bench/serve_picture.py --model runs/en_de "A little girl climbing into a wooden playhouse."
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("sentence")
    ap.add_argument("--beam-size", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "docs" / "serve_page.png"))
    ap.add_argument("--width", type=int, default=900)
    args = ap.parse_args(argv)

    from playwright.sync_api import sync_playwright
    from tests.serving import chromium_path, live_server

    from attnseq.serve import create_app, load_models

    chromium = chromium_path()
    if chromium is None:
        sys.exit("bench/serve_picture.py: needs Chromium (scripts/debian-package.sh chromium chromium)")
    models = load_models([args.model])
    with live_server(create_app(models)) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": args.width, "height": 900}, device_scale_factor=1)
        page.goto(url + "/")
        page.wait_for_selector("#model option", state="attached")
        page.fill("#beam", str(args.beam_size))
        page.fill("#nbest", "3")
        page.fill("#input", args.sentence)
        page.click("#submit")
        page.wait_for_selector("#heatmap td.cell")
        weights = page.eval_on_selector_all(
            "#heatmap td.cell", "cells => cells.map(c => [Number(c.dataset.weight), c.dataset.row, c.dataset.col])"
        )
        _, row, col = max(weights)  # hover the cell with the largest weight
        page.hover(f"#heatmap td.cell[data-row='{row}'][data-col='{col}']")
        page.screenshot(path=args.out, full_page=True)
        browser.close()
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
