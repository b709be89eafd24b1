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


def _print_rows(rows, timings) -> None:
    for row in rows:
        print(row.title)
        for card in row.cards[:6]:
            print(f"   {card.title:38.38s}  {card.reason}")
        if len(row.cards) > 6:
            print(f"   ... {len(row.cards) - 6} more")
        print()
    print(f"(home() took {timings.home_ms:.1f} ms)\n")


def run_bundle(bundle_path: Path, db_path: Path | None = None, media: Path | None = None) -> int:
    """The home screen of a demo viewer on the shipped bundle, before and after some viewing.

    The viewer finishes two programmes of the most popular genre's best-known show, likes one,
    stops one of another genre a third of the way in, dislikes one; then a recording made on
    the box (a real clip, if ``media`` is given) is embedded by the int8 model and joins the
    "New for you" row.
    """
    import numpy as np

    from device.engine import Engine
    from simulator.engine_process import demo_picks

    db_path = db_path or Path(tempfile.mkdtemp(prefix="tvrec-demo-")) / "history.db"
    now = time.time()
    with Engine(bundle_path, db_path, clock=lambda: now) as engine:
        b = engine.bundle
        print(f"tvrec demo - {b.n_items} programmes ({int(np.sum(b.items.cold))} new, without "
              f"viewing data), bundle {b.path}, history in {db_path}\n")
        if "viewer" not in {p.id for p in engine.history.profiles()}:
            engine.add_profile("viewer", "Demo viewer")
        print("== A new viewer ==\n")
        _print_rows(engine.home("viewer"), engine.timings)

        (a, c, d), (e, f) = demo_picks(b)
        t = now - 5 * 86400
        for item in (a, c):
            engine.record("viewer", item, "play", position=0.0, timestamp=t)
            engine.record("viewer", item, "finish", timestamp=t + 3600)
            t += 86400
        engine.record("viewer", a, "like", timestamp=t)
        engine.record("viewer", e, "play", position=0.0, timestamp=t + 100)
        engine.record("viewer", e, "stop", position=engine.card(e).duration / 3, timestamp=t + 200)
        engine.record("viewer", f, "dislike", timestamp=t + 300)
        print(f"== After finishing {engine.card(a).title!r} and {engine.card(c).title!r} "
              f"(liked the first), stopping {engine.card(e).title!r} a third in, disliking "
              f"{engine.card(f).title!r} ==\n")
        _print_rows(engine.home("viewer"), engine.timings)

        if media is not None and media.is_file():
            card = engine.add_local_item(media, {"title": f"My recording: {media.stem}"})
            print(f"== Recorded {media.name} on the box: embedded in "
                  f"{engine.timings.embed_ms:.0f} ms (decode {engine.timings.extra['decode_ms']:.0f}"
                  f" ms + int8 model {engine.timings.extra['model_ms']:.1f} ms) ==\n")
            new = [r for r in engine.home("viewer") if r.kind == "new"]
            ids_new = [x.item_id for x in new[0].cards] if new else []
            if card.item_id in ids_new:
                print(f"It is in 'New for you' at position {ids_new.index(card.item_id) + 1} "
                      f"of {len(ids_new)}.")
            else:
                print("It is not among this viewer's top 'New for you' picks (no genre, and its "
                      "content is far from what they watch).")
            sims = engine.similar(card.item_id, n=3)
            print("Its details page suggests: " + "; ".join(c.title for c in sims) + "\n")
    return 0
