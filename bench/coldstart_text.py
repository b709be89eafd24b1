"""Cold start from the text teacher's vectors vs metadata alone, on the same held-out items.

``tvrec eval coldstart --text`` places cold items from the text teacher's embedding of each
item's title, year, genres and description together with the metadata features. Whether the
vectors *add* anything is only visible on the same held-out items, so
:func:`models.coldstart.evaluate_catalog_cold_start` reports, when vectors are given, the
shipped ranking with them (``content_*``) and without them (``metadata_*``) on one split, beside
genre labels alone and random. This runs that over seeds and both text teachers and prints a
table (means and per-seed wins)::

    .venv/bin/python bench/coldstart_text.py [--items ../shared/data/ml-100k/u.item \\
        --interactions ../shared/data/ml-100k/u.data] [--seeds 0 1 2 3 4] [--teachers wordllama minilm]

Writes ``bench/results/coldstart_text.json``. Needs the ``teach`` extra (``make teach``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KEYS = ("content", "metadata", "genre", "random")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = ROOT.parent / "shared" / "data" / "ml-100k"
    ap.add_argument("--items", default=str(shared / "u.item"))
    ap.add_argument("--interactions", default=str(shared / "u.data"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--teachers", nargs="+", default=["wordllama", "minilm"])
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "coldstart_text.json"))
    args = ap.parse_args(argv)

    from models.coldstart import evaluate_catalog_cold_start
    from models.readers import read_items, read_log
    from models.teachers.text import catalog_text_vectors

    items = read_items(args.items)
    log = read_log(args.interactions, items)
    result = {"items": args.items, "interactions": args.interactions, "seeds": args.seeds,
              "k": 20, "teachers": {}}
    for name in args.teachers:
        t0 = time.perf_counter()
        V, has, _ = catalog_text_vectors(items, name, progress=False).align(items.ids)
        embed_s = time.perf_counter() - t0
        runs = [evaluate_catalog_cold_start(items, log, vectors=(V, has), seed=s) for s in args.seeds]
        summary = {f"{key}_ndcg@20": float(np.mean([r[f"{key}_ndcg@20"] for r in runs]))
                   for key in KEYS}
        summary.update({f"{key}_recall@20": float(np.mean([r[f"{key}_recall@20"] for r in runs]))
                        for key in KEYS})
        summary["text_beats_metadata_seeds"] = int(sum(r["content_ndcg@20"] > r["metadata_ndcg@20"]
                                                       for r in runs))
        summary["metadata_beats_genre_seeds"] = int(sum(r["metadata_ndcg@20"] > r["genre_ndcg@20"]
                                                        for r in runs))
        result["teachers"][name] = {"dim": int(V.shape[1]), "embed_seconds": embed_s,
                                    "mean": summary, "runs": runs}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1))

    print(f"{'teacher':10s} {'seed':>4s} {'text+meta':>10s} {'meta':>8s} {'genre':>8s} {'random':>8s}"
          "   (NDCG@20, same held-out items per seed)")
    for name, t in result["teachers"].items():
        for r in t["runs"]:
            print(f"{name:10s} {r['seed']:4d} " + " ".join(f"{r[f'{k}_ndcg@20']:8.4f}" for k in KEYS))
        m = t["mean"]
        print(f"{name:10s} {'mean':>4s} " + " ".join(f"{m[f'{k}_ndcg@20']:8.4f}" for k in KEYS)
              + f"   text > meta on {m['text_beats_metadata_seeds']}/{len(args.seeds)} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
