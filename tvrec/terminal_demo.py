"""``tvrec demo``: the home-screen rows of a viewer, printed in the terminal.

Until the simulator and the shipped demo bundle exist, the demo runs the real pieces end to end
on MovieLens 100K: the fleet learns the default item-item model from everyone's ratings, the box
keeps one viewer's watch history in SQLite (a few films played, finished, liked, half-watched),
and the device scorer turns that history into rows with their reasons.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

#: A viewer who loves space opera and animation (MovieLens item ids), and what they did.
DEMO_EVENTS = [
    # (item id, kind, fraction of the film, days ago)
    ("50", "finish", 1.0, 20),   # Star Wars
    ("50", "like", None, 20),
    ("181", "finish", 1.0, 12),  # Return of the Jedi
    ("1", "finish", 1.0, 30),    # Toy Story
    ("172", "progress", 0.4, 1),  # The Empire Strikes Back, 40% in
    ("71", "progress", 0.7, 3),  # The Lion King, 70% in
    ("222", "dislike", None, 5),  # Star Trek: First Contact
]


def load_titles(item_file: Path) -> dict[str, str]:
    """MovieLens ``u.item`` (pipe-separated, latin-1) -> {item id: title}."""
    titles = {}
    with open(item_file, encoding="latin-1") as fh:
        for line in fh:
            fields = line.rstrip("\n").split("|")
            if len(fields) > 1:
                titles[fields[0]] = fields[1]
    return titles


def run(ratings_path: Path, db_path: Path | None = None, rows_per_line: int = 6) -> int:
    from device.cf import ItemIndex, recommend
    from device.history import History
    from models.cowatch import default_model
    from models.evaluate import random_split
    from models.movielens import load_ratings

    ratings = load_ratings(ratings_path)
    titles = load_titles(ratings_path.parent / "u.item")
    # Fit on everything: the split helper just builds the users x items matrix (all train).
    full = random_split(ratings.users, ratings.items, train_fraction=1.0)
    t0 = time.perf_counter()
    model = default_model(len(full.item_ids)).fit(full.train)
    table = model.to_table(full.item_ids)
    fit_s = time.perf_counter() - t0
    index = ItemIndex(table.item_ids)

    db_path = db_path or Path(tempfile.mkdtemp(prefix="tvrec-demo-")) / "history.db"
    now = time.time()
    with History(db_path, clock=lambda: now) as history:
        history.upsert_items(
            {"id": i, "title": titles.get(i, f"#{i}"), "genres": [], "duration": 7200.0}
            for i in table.item_ids
        )
        if "viewer" not in {p.id for p in history.profiles()}:
            history.add_profile("viewer", "Demo viewer")
            for item, kind, frac, days in DEMO_EVENTS:
                pos = None if frac is None else frac * 7200.0
                history.record("viewer", item, kind, position=pos, timestamp=now - days * 86400)
        aff = history.affinities("viewer")
        resume = history.continue_watching("viewer")

    title = lambda i: titles.get(i, i)  # noqa: E731
    shown: set[str] = set()
    rows: list[tuple[str, list[str]]] = []

    rows.append(("Continue watching", [f"{title(r.item_id)} ({r.completion:.0%})" for r in resume]))
    shown.update(r.item_id for r in resume)
    history_ids = list(aff.item_ids)
    shown.update(history_ids)

    picks = recommend(table, history_ids, aff.affinity, n=rows_per_line, exclude=shown, index=index)
    rows.append(("Top picks for you", [f"{title(r.item_id)}  <- {title(r.because)}" if r.because
                                       else title(r.item_id) for r in picks]))
    shown.update(r.item_id for r in picks)

    # "Because you watched X" for the strongest positive history item.
    best = history_ids[int(aff.affinity.argmax())]
    because = recommend(table, [best], [1.0], n=rows_per_line, exclude=shown, index=index)
    rows.append((f"Because you watched {title(best)}", [title(r.item_id) for r in because]))
    shown.update(r.item_id for r in because)

    popular = recommend(table, [], [], n=rows_per_line, exclude=shown, index=index)
    rows.append(("Popular now", [title(r.item_id) for r in popular]))

    print(f"tvrec demo - MovieLens 100K, {len(table.item_ids)} items, "
          f"{type(model).__name__} K={table.k} learned in {fit_s:.1f} s; history in {db_path}\n")
    for heading, items in rows:
        print(heading)
        for item in items or ["(nothing yet)"]:
            print(f"   {item}")
        print()
    return 0
