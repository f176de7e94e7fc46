"""Regenerate the pictures of docs/visualization.md from a model (and a training run for the curves).

    .venv/bin/python docs/images/make_images.py --model runs/tatoeba-en-zh --run runs/tatoeba-en-zh

writes, next to this file: attention-cross.png, attention-summary.png, positional.png, training.png (with
--run), and with --screenshot page.png and page-heads.png (the attention explorer in Debian's chromium).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def screenshot(translator, text: str, out: Path, chromium: str) -> None:
    """Serve the model on a free loopback port, open the page, translate ``text``, hover a token, capture."""
    import uvicorn
    from playwright.sync_api import sync_playwright

    from rosetta.server import create_app

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(translator), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1100, "height": 860}, device_scale_factor=1)
            page.goto(f"http://127.0.0.1:{sock.getsockname()[1]}/")
            page.fill("#text", text)
            page.press("#text", "Enter")
            page.locator("canvas.heatmap").first.wait_for()
            page.hover('.token[data-side="query"][data-index="1"]')
            page.screenshot(path=str(out))
            page.select_option("#head", "all")  # every head of the last layer, a source token hovered
            page.hover('.token[data-side="key"][data-index="1"]')
            page.screenshot(path=str(out.with_name(out.stem + "-heads.png")))
            browser.close()
    finally:
        server.should_exit = True
        thread.join(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--run", help="training run directory (metrics.jsonl) for training.png")
    parser.add_argument("--text", default="I like to read books.")
    parser.add_argument("--screenshot", action="store_true", help="also page.png (needs chromium + playwright)")
    args = parser.parse_args()

    import rosetta
    from rosetta.view import plots

    translator = rosetta.load(args.model)
    result = translator.attention(args.text)
    plots.save_figure(plots.attention_grid(result, "cross"), HERE / "attention-cross.png")
    plots.save_figure(plots.attention_summary(result), HERE / "attention-summary.png")
    plots.save_figure(plots.positional_figure(128, 100), HERE / "positional.png")
    if args.run:
        plots.save_figure(plots.training_figure(args.run), HERE / "training.png")
    if args.screenshot:
        screenshot(translator, args.text, HERE / "page.png", shutil.which("chromium") or "/usr/bin/chromium")
    for path in sorted(HERE.glob("*.png")):
        print(f"{path}  {path.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
