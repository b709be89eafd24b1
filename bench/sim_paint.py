"""How long the simulator takes to paint a frame, and to answer a remote press.

A TV UI has 16.7 ms per frame at 60 Hz. This measures, offscreen on the demo bundle with a real
engine process, the median and p95 of:

- painting the whole home screen (and the details page, the player) at 720p and 1080p;
- a D-pad press on the home screen: the press plus the repaint it causes (no engine call);
- a ``home()`` round trip through the engine process (request -> rows on the Qt thread).

Run: ``.venv/bin/python bench/sim_paint.py`` (prints a table, writes
``bench/results/sim_paint.json``). Figures are host figures; a box's GPU-less Qt paints slower.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def _stats(xs: list[float]) -> dict:
    xs = sorted(xs)
    return {"p50_ms": round(statistics.median(xs), 3),
            "p95_ms": round(xs[min(len(xs) - 1, int(0.95 * len(xs)))], 3), "n": len(xs)}


def _timed(fn, n: int) -> list[float]:
    """Milliseconds of ``n`` calls of ``fn``."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> int:
    from PySide6.QtWidgets import QApplication

    from simulator.app import TvView, wait_idle, wait_until
    from simulator.bridge import EngineClient
    from simulator.screens import DetailsScreen, PlayerScreen

    app = QApplication.instance() or QApplication([])
    out: dict = {"bundle": "demo/bundle", "note": "host, offscreen raster, median/p95 of n"}
    with tempfile.TemporaryDirectory() as tmp:
        client = EngineClient(str(ROOT / "demo" / "bundle"), str(Path(tmp) / "h.db"))
        try:
            for res in ("720p", "1080p"):
                tv = TvView(client, resolution=res, profile="alex")
                wait_until(lambda: tv.home_screen is not None and tv.home_screen.rows is not None, 60)
                wait_idle(tv)
                tv.settle()
                paint = _timed(tv.render_image, 60)
                moves = iter(["right" if (i // 5) % 2 == 0 else "left" for i in range(40)])

                def press_and_paint():
                    tv.press(next(moves))
                    tv.screen.tick(0.016)
                    tv.render_image()

                press = _timed(press_and_paint, 40)
                card = tv.home_screen.focused_card
                tv.push(DetailsScreen(tv, card))
                wait_idle(tv)
                tv.settle()
                details = _timed(tv.render_image, 30)
                tv.push(PlayerScreen(tv, card, 0.0, None))
                player = _timed(lambda: (tv.screen.tick(0.016), tv.render_image()), 30)
                tv.screen.playback.stop()
                tv.go_home()
                wait_idle(tv)
                rtt = []
                for _ in range(20):
                    got = []
                    t0 = time.perf_counter()
                    client.call("home", "alex",
                                on_result=lambda rows: got.append(time.perf_counter()))
                    while not got:  # a tight loop: no polling step in the figure
                        app.processEvents()
                    rtt.append((got[0] - t0) * 1000)
                out[res] = {"paint_home": _stats(paint), "press_and_repaint": _stats(press),
                            "paint_details": _stats(details), "paint_player": _stats(player),
                            "home_round_trip": _stats(rtt),
                            "engine_home_ms_last": round(client.stats.get("home_ms", float("nan")), 3)}
                tv.deleteLater()
        finally:
            client.close()
    path = ROOT / "bench" / "results" / "sim_paint.json"
    path.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(f"{'figure':22s} {'720p p50':>9s} {'p95':>7s} {'1080p p50':>10s} {'p95':>7s}")
    for k in ("paint_home", "press_and_repaint", "paint_details", "paint_player", "home_round_trip"):
        a, b = out["720p"][k], out["1080p"][k]
        print(f"{k:22s} {a['p50_ms']:9.2f} {a['p95_ms']:7.2f} {b['p50_ms']:10.2f} {b['p95_ms']:7.2f}")
    print(f"(ms; a 60 Hz frame is 16.7 ms) -> {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
