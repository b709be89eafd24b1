"""Cold start with content vectors vs metadata alone, on a catalog with real clips.

ML-100K has no media, so the vector figure is measured on a demo catalog **generated with
another seed** than the one the shipped int8 content model (``demo/bundle``) was trained on:
its 600 programmes, clips and households are new to the model, so the model's embeddings are
honest content vectors (look and sound of each clip), not memorised co-watch targets. Steps:

1. ``tvrec catalog generate --seed 1`` (skipped if ``--catalog`` already holds one);
2. its items as a generic catalog CSV (id, title, genres by weight, duration, release) and its
   training log as it is (a watch-event CSV);
3. every clip embedded by the shipped int8 model (:func:`export.pipeline.media_vectors`, the
   code ``tvrec bundle build --media --model`` runs) into ``vectors.npz``;
4. :func:`models.coldstart.evaluate_catalog_cold_start` with and without the vectors, over
   seeds, side by side in one run.

Writes ``bench/results/coldstart_vectors.json`` and prints a table::

    .venv/bin/python bench/coldstart_vectors.py [--catalog DIR] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def items_csv(catalog: Path) -> Path:
    """The demo catalog's items as a generic catalog CSV (what a platform would export)."""
    import csv

    m = json.loads((catalog / "catalog.json").read_text())
    out = catalog / "items.csv"
    with open(out, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "title", "genres", "duration", "release"])
        for it in m["items"]:
            genres = sorted(it["genres"], key=lambda g: -it["genres"][g])
            w.writerow([it["id"], it["title"], "|".join(genres), it["duration_s"],
                        it["release_ts"]])
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--catalog", type=Path, default=Path("/tmp/tvrec-coldstart-demo-seed1"))
    p.add_argument("--model", type=Path, default=ROOT / "demo" / "bundle")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--k", type=int, default=20,
                   help="cut-off (a small catalog holds out few items: 20 may rank them all)")
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "coldstart_vectors.json")
    args = p.parse_args()

    from export.pipeline import media_vectors
    from models.coldstart import evaluate_catalog_cold_start
    from models.readers import read_item_vectors, read_items, read_log

    cat = args.catalog
    if not (cat / "catalog.json").is_file():
        subprocess.run([sys.executable, "-m", "tvrec.cli", "catalog", "generate", "--out", str(cat),
                        "--seed", "1"], check=True, cwd=ROOT)
    items = read_items(items_csv(cat))
    log = read_log(cat / "interactions.csv", items)
    vec_path = cat / "vectors.npz"
    if not vec_path.is_file():
        vectors, _ = media_vectors(items, cat / "media", args.model)
        np.savez(vec_path, ids=vectors.ids.astype(str), vectors=vectors.vectors)
    V, has, _ = read_item_vectors(vec_path).align(items.ids)

    rows = []
    for seed in args.seeds:
        meta = evaluate_catalog_cold_start(items, log, seed=seed, k=args.k)
        vec = evaluate_catalog_cold_start(items, log, vectors=(V, has), seed=seed, k=args.k)
        rows.append({"seed": seed, "metadata": meta, "vectors+metadata": vec})
    k = args.k
    keys = (f"content_ndcg@{k}", f"content_recall@{k}", f"genre_ndcg@{k}", f"random_ndcg@{k}")
    print(f"{'seed':>4} {'ranking':18s} " + " ".join(f"{k:>18s}" for k in keys) + "  cold  users")
    for r in rows:
        for name in ("metadata", "vectors+metadata"):
            m = r[name]
            print(f"{r['seed']:>4} {name:18s} " + " ".join(f"{m[k]:18.3f}" for k in keys)
                  + f"  {m['n_cold_items']:4d}  {m['n_users']:5d}")
    mean = {name: float(np.mean([r[name][f"content_ndcg@{k}"] for r in rows]))
            for name in ("metadata", "vectors+metadata")}
    print(f"mean content_ndcg@{k}: " + ", ".join(f"{k} {v:.3f}" for k, v in mean.items()))
    result = {"catalog": str(cat), "catalog_seed": 1, "model": str(args.model),
              "vectors": f"int8 content model of {args.model} on each clip ({V.shape[1]}-d, "
                         f"{int(has.sum())} items)", "k": k, "runs": rows, f"mean_content_ndcg@{k}": mean}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    sys.exit(main())
