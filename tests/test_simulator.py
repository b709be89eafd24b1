"""The simulator under a real Qt event loop (offscreen), the real engine process and a real DB.

One engine process serves the whole module (starting one costs about a second); each test uses
its own viewer profile, which is exactly the isolation a profile gives on a real box.
"""

from __future__ import annotations

import os
import subprocess
import time
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtGui import QImage  # noqa: E402

from device.history import History  # noqa: E402
from simulator.app import TvView, wait_idle  # noqa: E402
from simulator.bridge import EngineClient  # noqa: E402
from simulator.screens import DetailsScreen, HomeScreen, PlayerScreen, SettingsScreen  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def db_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sim") / "history.db"


@pytest.fixture(scope="module")
def client(qapp, demo_bundle, db_path):
    c = EngineClient(str(demo_bundle), str(db_path))
    yield c
    c.close()


def open_tv(qtbot, client, profile: str, **kw) -> TvView:
    tv = TvView(client, profile=profile, resolution=kw.pop("resolution", "720p"), **kw)
    qtbot.addWidget(tv)
    tv.resize(tv.theme.width, tv.theme.height)
    tv.show()
    qtbot.waitUntil(lambda: tv.home_screen is not None and tv.home_screen.rows is not None,
                    timeout=60_000)
    wait_idle(tv)
    return tv


def key(qtbot, tv: TvView, k, times: int = 1) -> None:
    for _ in range(times):
        qtbot.keyClick(tv, k)
    wait_idle(tv)
    tv.settle()


def events_of(db_path: Path, profile: str) -> list[tuple[str, str]]:
    with History(db_path) as h:
        return [(e.item_id, e.kind) for e in h.events(profile)]


def row_kinds(tv: TvView) -> list[str]:
    return [r.kind for r in tv.home_screen.rows]


# ---------------------------------------------------------------------------- the engine process


def test_the_engine_runs_in_its_own_process_without_qt(qtbot, client):
    got = []
    client.call("loaded_modules", ["PySide6", "tensorflow", "models", "export", "simulator",
                                   "musicnn", "librosa", "wordllama", "tokenizers", "torch",
                                   "skimage", "pretty_midi", "tinysoundfont"],
                on_result=got.append)
    qtbot.waitUntil(lambda: bool(got), timeout=30_000)
    # The child imports simulator.engine_process (device-only) to run the loop; nothing else.
    assert got[0] == ["simulator"]
    assert client.stats["pid"] != os.getpid()


def test_a_request_returns_at_once_and_its_answer_arrives_later(qtbot, client):
    got = []
    client.call("home", "nobody-yet", on_result=got.append, on_error=got.append)
    assert client.busy and got == []  # the UI thread did not wait
    qtbot.waitUntil(lambda: bool(got), timeout=30_000)
    assert type(got[0]).__name__ == "UnknownProfileError"  # typed errors cross the pipe


# ---------------------------------------------------------------------------- D-pad and screens


def test_new_profile_sees_popular_now_and_the_dpad_moves_predictably(qtbot, client):
    tv = open_tv(qtbot, client, "dpad")
    home = tv.home_screen
    assert row_kinds(tv)[-1] == "popular"
    assert home.grid.position == (1, 0)               # opens on the first card
    key(qtbot, tv, Qt.Key_Left)
    assert home.grid.position == (1, 0)               # left edge stops
    key(qtbot, tv, Qt.Key_Right, 3)
    assert home.grid.position == (1, 3)
    n = len(home.rows[0].cards)
    key(qtbot, tv, Qt.Key_Right, n + 2)
    assert home.grid.position == (1, n - 1)           # right edge stops
    key(qtbot, tv, Qt.Key_Up)
    assert home.grid.position[0] == 0                 # the top bar (profile, settings)
    key(qtbot, tv, Qt.Key_Down)
    assert home.grid.position == (1, n - 1)           # back to the same card
    # The focused card is scrolled into view.
    step = tv.theme.card_w + tv.theme.card_gap
    x = tv.theme.safe_x + (n - 1) * step - home._x[1]
    assert 0 <= x and x + tv.theme.card_w <= tv.theme.width


def test_ok_opens_details_back_returns_home_returns(qtbot, client):
    tv = open_tv(qtbot, client, "nav")
    card = tv.home_screen.focused_card
    key(qtbot, tv, Qt.Key_Return)
    assert isinstance(tv.screen, DetailsScreen) and tv.screen.card.item_id == card.item_id
    assert tv.screen.similar, "details page lists similar programmes"
    key(qtbot, tv, Qt.Key_Down)
    key(qtbot, tv, Qt.Key_Return)                     # a similar programme's details
    assert isinstance(tv.screen, DetailsScreen) and len(tv.stack) == 3
    key(qtbot, tv, Qt.Key_Escape)                     # Back: one level
    assert len(tv.stack) == 2 and tv.screen.card.item_id == card.item_id
    key(qtbot, tv, Qt.Key_Return)
    key(qtbot, tv, Qt.Key_H)                          # Home: all the way
    assert tv.stack == [tv.home_screen] and tv.home_screen.grid.position == (1, 0)
    key(qtbot, tv, Qt.Key_Backspace)                  # Back on home stays home
    assert tv.stack == [tv.home_screen]


def test_playing_to_the_end_writes_finish_and_changes_the_home_screen(qtbot, client, db_path):
    tv = open_tv(qtbot, client, "finisher")
    assert row_kinds(tv)[-1] == "popular" and "top_picks" not in row_kinds(tv)
    before = [[c.item_id for c in r.cards] for r in tv.home_screen.rows]
    key(qtbot, tv, Qt.Key_Down, len(before) - 1)      # the Popular now row
    card = tv.home_screen.focused_card
    assert card.reason == "Popular now"
    key(qtbot, tv, Qt.Key_Space)                      # Play straight from the home screen
    assert isinstance(tv.screen, PlayerScreen)
    key(qtbot, tv, Qt.Key_Right, 10)                  # seek to the end
    qtbot.waitUntil(lambda: tv.screen is tv.home_screen, timeout=10_000)
    wait_idle(tv)
    kinds = [k for i, k in events_of(db_path, "finisher") if i == card.item_id]
    assert kinds[0] == "play" and kinds[-1] == "finish" and kinds.count("finish") == 1
    shown = {c.item_id for r in tv.home_screen.rows for c in r.cards}
    assert card.item_id not in shown                  # a finished programme is not offered again
    assert "top_picks" in row_kinds(tv)               # and it now drives recommendations
    # an episode: its successor is Up next in Continue watching, and the reasons name the show
    first = tv.home_screen.rows[0]
    assert first.kind == "continue" and first.cards[0].kind == "next"
    assert first.cards[0].title == card.title.replace("#7", "#8")
    top = [r for r in tv.home_screen.rows if r.kind == "top_picks"][0]
    assert top.cards[0].reason == "Because you watched Super Cycling Cup Final"


def test_stopping_halfway_puts_the_programme_in_continue_watching(qtbot, client, db_path):
    tv = open_tv(qtbot, client, "stopper")
    card = tv.home_screen.focused_card
    key(qtbot, tv, Qt.Key_Return)
    key(qtbot, tv, Qt.Key_Return)                     # Play on the details page
    assert isinstance(tv.screen, PlayerScreen)
    tv.screen.playback.toggle()                       # pause so the clock cannot reach the end
    key(qtbot, tv, Qt.Key_Right, 4)
    key(qtbot, tv, Qt.Key_Escape)                     # Back = stop
    assert isinstance(tv.screen, DetailsScreen)
    key(qtbot, tv, Qt.Key_H)
    assert tv.home_screen.rows[0].kind == "continue"
    assert tv.home_screen.rows[0].cards[0].item_id == card.item_id
    assert tv.home_screen.rows[0].cards[0].progress == pytest.approx(0.4, abs=0.02)
    assert events_of(db_path, "stopper")[-1] == (card.item_id, "stop")


def test_a_profile_switch_isolates_history(qtbot, client, db_path):
    tv = open_tv(qtbot, client, "first")
    key(qtbot, tv, Qt.Key_Down, len(tv.home_screen.rows) - 1)
    key(qtbot, tv, Qt.Key_Space)
    key(qtbot, tv, Qt.Key_Right, 10)                  # "first" finishes a programme
    qtbot.waitUntil(lambda: tv.screen is tv.home_screen, timeout=10_000)
    wait_idle(tv)
    first_rows = row_kinds(tv)
    client.call("add_profile", "second", "Second")
    wait_idle(tv)
    key(qtbot, tv, Qt.Key_Up, len(tv.home_screen.rows))  # up to the top bar
    key(qtbot, tv, Qt.Key_Left)                       # the profile chip
    key(qtbot, tv, Qt.Key_Return)
    names = [line[0] for line in tv.screen.lines()]
    assert tv.screen.grid.row == names.index("first")  # the list opens on the current viewer
    assert tv.screen.lines()[tv.screen.grid.row][1] == "current"
    key(qtbot, tv, Qt.Key_Down, names.index("Second") - tv.screen.grid.row)
    key(qtbot, tv, Qt.Key_Return)
    assert tv.profile == "second" and isinstance(tv.screen, HomeScreen)
    assert "top_picks" in first_rows and "top_picks" not in row_kinds(tv)
    assert events_of(db_path, "second") == []


def test_paused_history_writes_nothing(qtbot, client, db_path):
    tv = open_tv(qtbot, client, "private")
    key(qtbot, tv, Qt.Key_Up)
    key(qtbot, tv, Qt.Key_Right)                      # Settings
    key(qtbot, tv, Qt.Key_Return)
    assert isinstance(tv.screen, SettingsScreen)
    key(qtbot, tv, Qt.Key_Down)                       # "Pause watch history"
    key(qtbot, tv, Qt.Key_Return)
    assert tv.screen.paused is True
    key(qtbot, tv, Qt.Key_H)
    key(qtbot, tv, Qt.Key_Space)
    key(qtbot, tv, Qt.Key_Right, 10)
    qtbot.waitUntil(lambda: tv.screen is tv.home_screen, timeout=10_000)
    wait_idle(tv)
    assert events_of(db_path, "private") == []
    assert "top_picks" not in row_kinds(tv)


def test_budget_overlay_shows_the_engine_figures_against_the_profile(qtbot, client):
    tv = open_tv(qtbot, client, "budget", hardware="entry")
    key(qtbot, tv, Qt.Key_B)
    assert tv.overlay_on
    lines = {label: (value, budget, ok) for label, value, budget, ok in tv.budget_lines()}
    value, budget, ok = lines["home()  last"]
    assert "est." in value and budget == "120 ms" and ok is True
    assert lines["model size"][2] is True
    rss_value = float(lines["engine RSS peak"][0].split()[0])
    assert 10 < rss_value < 500
    tv.set_hardware("high")
    assert tv.budget_lines()[0][2] == "50.0 ms"


def test_a_recording_plays_its_real_frames(qtbot, client, shared_data):
    clip = shared_data / "media" / "video" / "chaplin.mp4"
    got = []
    client.call("add_media_dir", str(clip.parent), on_result=got.append, on_error=got.append)
    qtbot.waitUntil(lambda: bool(got), timeout=120_000)
    assert not isinstance(got[0], Exception)
    assert "local:chaplin" in got[0]["added"] + got[0]["skipped"]
    # Decoding ran in a short-lived child: FFmpeg never entered the engine process.
    mods = []
    client.call("loaded_modules", ["av"], on_result=mods.append)
    qtbot.waitUntil(lambda: bool(mods), timeout=30_000)
    assert mods[0] == []
    tv = open_tv(qtbot, client, "watcher")
    from device.engine import Card

    card = Card("local:chaplin", "Chaplin", (), 10.0, "Recorded on this box", source="local")
    tv.play(card)
    qtbot.waitUntil(lambda: isinstance(tv.screen, PlayerScreen), timeout=10_000)
    tv.screen.playback.toggle()
    tv.screen.playback.seek(3)
    tv.settle()
    assert tv.screen.frame is not None and tv.screen.frame.width() > 100
    img = tv.render_image()
    centre = img.pixelColor(img.width() // 2, img.height() // 2)
    assert centre.name() != "#000000"


def test_a_damaged_recording_shows_the_poster_and_a_message(qtbot, client, tmp_path):
    tv = open_tv(qtbot, client, "damaged")
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00garbage" * 100)
    from device.engine import Card

    card = Card("p0001", "Broken", ("drama",), 60.0, "")
    tv.push(PlayerScreen(tv, card, 0.0, str(bad)))
    assert tv.screen.frames is None
    assert tv.screen.media_error.startswith("Broken: cannot play the recording")
    assert tv.toast_text == tv.screen.media_error
    tv.settle()
    assert not tv.render_image().isNull()


# ---------------------------------------------------------------------------- headless screenshots


def image_spread(img: QImage) -> float:
    img = img.convertToFormat(QImage.Format_RGB32)
    ptr = img.constBits()
    arr = np.frombuffer(ptr, dtype=np.uint8).reshape(img.height(), img.width(), 4)
    return float(arr[..., :3].std())


def test_render_is_exactly_the_resolution_and_not_blank(qtbot, client):
    tv = open_tv(qtbot, client, "shot", resolution="1080p")
    img = tv.render_image()
    assert (img.width(), img.height()) == (1920, 1080)
    assert image_spread(img) > 10


def test_cli_screenshot_with_a_script(tmp_path, demo_bundle):
    out, frames = tmp_path / "shot.png", tmp_path / "frames"
    proc = subprocess.run(
        [sys.executable, "-m", "tvrec.cli", "sim", "--bundle", str(demo_bundle),
         "--db", str(tmp_path / "h.db"), "--screenshot", str(out), "--resolution", "720p",
         "--script", "down,right,ok", "--frames", str(frames)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    img = QImage(str(out))
    assert (img.width(), img.height()) == (1280, 720) and image_spread(img) > 10
    assert sorted(p.name for p in frames.iterdir()) == [
        "000-start.png", "001-down.png", "002-right.png", "003-ok.png"]


def test_cli_refuses_an_unknown_key(tmp_path, demo_bundle):
    proc = subprocess.run(
        [sys.executable, "-m", "tvrec.cli", "sim", "--screenshot", str(tmp_path / "x.png"),
         "--script", "down,jump"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("tvrec sim: --script: unknown key 'jump'")


def test_the_on_screen_remote_drives_the_tv(qtbot, client):
    from simulator.app import MainWindow

    tv = TvView(client, profile="remote", resolution="720p")
    window = MainWindow(tv)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: tv.home_screen is not None and tv.home_screen.rows is not None,
                    timeout=60_000)
    wait_idle(tv)
    qtbot.mouseClick(window.remote.buttons["right"], Qt.LeftButton)
    assert tv.home_screen.grid.position == (1, 1)
    qtbot.mouseClick(window.remote.buttons["ok"], Qt.LeftButton)
    assert isinstance(tv.screen, DetailsScreen)
    qtbot.mouseClick(window.remote.buttons["back"], Qt.LeftButton)
    assert tv.screen is tv.home_screen
    qtbot.mouseClick(window.remote.buttons["info"], Qt.LeftButton)
    assert tv.overlay_on


def test_cli_refuses_a_damaged_bundle_in_one_line(tmp_path, demo_bundle):
    import shutil

    bad = tmp_path / "bundle"
    shutil.copytree(demo_bundle, bad)
    (bad / "item_ids.npy").write_bytes(b"truncated")
    proc = subprocess.run(
        [sys.executable, "-m", "tvrec.cli", "sim", "--bundle", str(bad), "--screenshot",
         str(tmp_path / "x.png")], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2 and not (tmp_path / "x.png").exists()
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tvrec sim: ") and "item_ids.npy" in lines[0]


def test_qt_bindings_keep_none_alive():
    """PySide6 6.12.0 on CPython 3.11 loses a reference to None on every void call; a few
    thousand paints later the interpreter dies. Guard the pinned version against that."""
    import gc

    from PySide6.QtGui import QFont

    font = QFont()
    gc.collect()
    before = sys.getrefcount(None)
    for _ in range(1000):
        font.setBold(True)
    gc.collect()
    assert sys.getrefcount(None) - before > -50


def test_clear_history_in_settings_empties_the_profile(qtbot, client, db_path):
    tv = open_tv(qtbot, client, "clearer")
    key(qtbot, tv, Qt.Key_Down, len(tv.home_screen.rows) - 1)
    key(qtbot, tv, Qt.Key_Space)
    key(qtbot, tv, Qt.Key_Right, 10)
    qtbot.waitUntil(lambda: tv.screen is tv.home_screen, timeout=10_000)
    wait_idle(tv)
    assert events_of(db_path, "clearer") and "top_picks" in row_kinds(tv)
    key(qtbot, tv, Qt.Key_Up, len(tv.home_screen.rows))
    key(qtbot, tv, Qt.Key_Right)                      # Settings
    key(qtbot, tv, Qt.Key_Return)
    key(qtbot, tv, Qt.Key_Down, 2)                    # "Clear watch history"
    key(qtbot, tv, Qt.Key_Return)
    assert tv.screen.name == "confirm" and tv.screen.grid.row == 0   # Cancel is focused
    key(qtbot, tv, Qt.Key_Return)                     # Cancel: nothing is cleared
    assert tv.screen.name == "settings" and events_of(db_path, "clearer")
    key(qtbot, tv, Qt.Key_Return)
    key(qtbot, tv, Qt.Key_Down)                       # "Clear history"
    key(qtbot, tv, Qt.Key_Return)
    assert tv.toast_text.startswith("Cleared ")
    assert events_of(db_path, "clearer") == []
    key(qtbot, tv, Qt.Key_H)
    assert "top_picks" not in row_kinds(tv)           # back to a new viewer's screen


def test_the_window_opens_on_a_real_x_server(tmp_path, demo_bundle):
    """`make demo`'s path: a real window (TV + remote) on an X server, a script, then closed."""
    import shutil

    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.skip("Xvfb not installed (.ci/run installs it)")
    display = f":{90 + os.getpid() % 100}"
    server = subprocess.Popen([xvfb, display, "-screen", "0", "1600x900x24", "-nolisten", "tcp"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
        env["DISPLAY"] = display
        proc = subprocess.run(
            [sys.executable, "-m", "tvrec.cli", "sim", "--bundle", str(demo_bundle), "--db",
             str(tmp_path / "h.db"), "--script", "down,right,ok,back", "--quit-after", "6"],
            capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
    finally:
        server.terminate()
        server.wait(10)
    with History(tmp_path / "h.db") as h:
        assert {p.id for p in h.profiles()} == {"alex", "sam", "kids"}  # the demo viewers (and the kids profile, issue 15) were seeded


# ---------------------------------------------------------------------------- Watch Next in the UI


def stop_at(qtbot, tv, steps: int):
    """Play the focused card from its details page, pause, seek ``steps`` tenths, Back."""
    key(qtbot, tv, Qt.Key_Return)
    key(qtbot, tv, Qt.Key_Return)
    assert isinstance(tv.screen, PlayerScreen)
    tv.screen.playback.toggle()
    key(qtbot, tv, Qt.Key_Right, steps)
    key(qtbot, tv, Qt.Key_Escape)
    key(qtbot, tv, Qt.Key_H)


def test_play_on_a_continue_watching_card_resumes_and_keeps_the_resume_point(qtbot, client, db_path):
    tv = open_tv(qtbot, client, "resumer", play_through_s=3600)  # ~real time: no drift
    card = tv.home_screen.focused_card
    stop_at(qtbot, tv, 3)
    assert tv.home_screen.focused_card.item_id == card.item_id  # first card of Continue watching
    with History(db_path) as h:
        resume = h.continue_watching("resumer")[0].position
    key(qtbot, tv, Qt.Key_Space)                      # Play straight from the card
    qtbot.waitUntil(lambda: isinstance(tv.screen, PlayerScreen), timeout=10_000)
    assert tv.screen.playback.position >= resume - 1e-6 > 0  # from the resume point, not 0:00
    tv.screen.playback.toggle()
    key(qtbot, tv, Qt.Key_Escape)
    with History(db_path) as h:
        play = [e for e in h.events("resumer") if e.kind == "play"][-1]
        assert play.position == pytest.approx(resume)     # the play event starts there
        assert h.continue_watching("resumer")[0].position >= resume  # and nothing went back


def test_quitting_during_playback_writes_a_stop(qtbot, client, db_path):
    from simulator.app import MainWindow

    tv = open_tv(qtbot, client, "quitter")
    window = MainWindow(tv)
    card = tv.home_screen.focused_card
    key(qtbot, tv, Qt.Key_Space)
    qtbot.waitUntil(lambda: isinstance(tv.screen, PlayerScreen), timeout=10_000)
    tv.screen.playback.toggle()
    key(qtbot, tv, Qt.Key_Right, 2)
    window.close()                                    # the window closes mid-programme
    wait_idle(tv)
    tv.setParent(None)                                # the test's fixture still owns the view
    with History(db_path) as h:
        last = h.events("quitter")[-1]
    assert (last.item_id, last.kind) == (card.item_id, "stop")
    assert 0.2 * last.duration <= last.position < last.duration  # where it was, not lost


def open_menu_action(qtbot, tv, label_start: str) -> None:
    key(qtbot, tv, Qt.Key_M)
    assert tv.screen.name == "card_menu"
    qtbot.waitUntil(lambda: tv.screen.on_list is not None, timeout=10_000)
    labels = [label for label, _ in tv.screen.lines()]
    target = next(n for n, label in enumerate(labels) if label.startswith(label_start))
    key(qtbot, tv, Qt.Key_Down, target)
    key(qtbot, tv, Qt.Key_Return)
    wait_idle(tv)


def test_the_card_menu_offers_the_watch_next_actions(qtbot, client):
    tv = open_tv(qtbot, client, "menu-user")
    stop_at(qtbot, tv, 4)
    card = tv.home_screen.focused_card
    assert tv.home_screen.rows[0].kind == "continue"
    key(qtbot, tv, Qt.Key_M)
    labels = [label for label, _ in tv.screen.lines()]
    assert "Remove from Continue watching" in labels and "Not interested" in labels
    assert "Mark as watched" in labels
    qtbot.waitUntil(lambda: "Add to My list" in [x for x, _ in tv.screen.lines()], timeout=10_000)
    key(qtbot, tv, Qt.Key_Escape)
    open_menu_action(qtbot, tv, "Remove from Continue watching")
    assert tv.toast_text == "Removed from Continue watching"
    assert "continue" not in row_kinds(tv)
    # My list, from a Popular now card: a My list row appears with it
    key(qtbot, tv, Qt.Key_Down, len(tv.home_screen.rows) - 1)
    listed = tv.home_screen.focused_card.item_id
    open_menu_action(qtbot, tv, "Add to My list")
    assert tv.toast_text == "Added to My list"
    mine = [r for r in tv.home_screen.rows if r.kind == "my_list"][0]
    assert [c.item_id for c in mine.cards] == [listed]
    # Not interested on a Popular now card: it leaves the screen for good
    key(qtbot, tv, Qt.Key_Down, len(tv.home_screen.rows))
    victim = tv.home_screen.focused_card.item_id
    assert tv.home_screen.rows[tv.home_screen.grid.row - 1].kind == "popular"
    open_menu_action(qtbot, tv, "Not interested")
    assert victim not in {c.item_id for r in tv.home_screen.rows for c in r.cards}


def test_a_long_ok_opens_the_card_menu(qtbot, client):
    from PySide6.QtCore import QEvent
    from PySide6.QtGui import QKeyEvent
    from PySide6.QtWidgets import QApplication

    from simulator.app import LONG_PRESS_S, wait_until

    tv = open_tv(qtbot, client, "long-presser")
    QApplication.sendEvent(tv, QKeyEvent(QEvent.KeyPress, Qt.Key_Return, Qt.NoModifier))
    wait_until(lambda: False, LONG_PRESS_S + 0.1)
    QApplication.sendEvent(tv, QKeyEvent(QEvent.KeyPress, Qt.Key_Return, Qt.NoModifier, "", True))
    assert tv.screen.name == "card_menu"
    QApplication.sendEvent(tv, QKeyEvent(QEvent.KeyRelease, Qt.Key_Return, Qt.NoModifier))
    assert tv.screen.name == "card_menu"              # the release does not also press OK
    key(qtbot, tv, Qt.Key_Escape)
    key(qtbot, tv, Qt.Key_Return)                     # a short OK still opens the details
    assert isinstance(tv.screen, DetailsScreen)


def test_leaving_a_kids_profile_needs_the_pin(qtbot, client):
    tv = open_tv(qtbot, client, "kids")              # the demo's kids profile (up to 7)
    assert tv.kids_max == 7
    key(qtbot, tv, Qt.Key_Up, len(tv.home_screen.rows) + 1)
    key(qtbot, tv, Qt.Key_Return)                     # the profile chip
    assert tv.screen.name == "profiles"
    names = [label for label, _ in tv.screen.lines()]
    key(qtbot, tv, Qt.Key_Up, 10)
    target = names.index("Alex")
    key(qtbot, tv, Qt.Key_Down, target)
    key(qtbot, tv, Qt.Key_Return)
    assert tv.screen.name == "pin" and tv.profile == "kids"
    for d in (Qt.Key_9, Qt.Key_9, Qt.Key_9, Qt.Key_9):
        key(qtbot, tv, d)
    assert tv.toast_text == "Wrong PIN" and tv.profile == "kids"
    for d in (Qt.Key_1, Qt.Key_2, Qt.Key_3, Qt.Key_4):
        key(qtbot, tv, d)
    assert tv.profile == "alex" and tv.kids_max is None and tv.screen is tv.home_screen


def test_details_why_follows_the_resume_point(qtbot, client, db_path):
    tv = open_tv(qtbot, client, "why-user", play_through_s=3600)  # ~real time: no drift
    stop_at(qtbot, tv, 3)
    key(qtbot, tv, Qt.Key_Return)                     # details of the Continue-watching card
    qtbot.waitUntil(lambda: tv.screen.resume_at > 0, timeout=10_000)
    with History(db_path) as h:
        r = h.continue_watching("why-user")[0]
    assert tv.screen.why == f"You stopped at {r.completion:.0%}"
    key(qtbot, tv, Qt.Key_Return)                     # Resume, then to the end
    key(qtbot, tv, Qt.Key_Right, 10)
    qtbot.waitUntil(lambda: isinstance(tv.screen, DetailsScreen), timeout=10_000)
    wait_idle(tv)
    assert tv.screen.why == "You have watched it"     # not a stale "Resume at 30%"


def test_titles_wrap_to_two_lines_and_end_with_the_ellipsis(qapp):
    from simulator import theme as T
    from simulator.screens import wrap_lines

    th = T.Theme.for_resolution("1080p")
    f = th.font(T.Theme.TEXT_BODY)
    # the title of issue 15's screenshot ("Super Cycli…up Final #10"): whole, on two lines
    lines = wrap_lines("Super Cycling Cup Final #10", f, th.card_w)
    assert len(lines) <= 2 and " ".join(lines) == "Super Cycling Cup Final #10"
    long = "The Extraordinary Adventures of the Midnight Harbour Detectives Season Finale #12"
    lines = wrap_lines(long, f, th.card_w)
    assert len(lines) == 2 and long.startswith(lines[0])
    assert lines[1].endswith("\u2026") and "\u2026" not in lines[0]
    assert long.startswith(" ".join(lines)[:-1].rstrip())  # cut at the end, never in the middle


def test_toast_and_overlay_stay_clear_of_what_they_would_hide(qtbot, client):
    tv = open_tv(qtbot, client, "layout-user", resolution="1080p")
    th = tv.theme
    rect = tv.toast_rect("A rather long message about recordings on this box " * 3)
    first_row_header = th.safe_y + th.header_h
    assert rect.bottom() <= first_row_header and rect.top() >= th.safe_y
    player_osd_top = th.height - th.safe_y - th.px(150) - th.px(30)
    assert rect.bottom() < player_osd_top
    n = len(tv.budget_lines())
    panel = tv.overlay_rect(n)
    last_line_bottom = panel.y() + th.px(14) + th.px(88) + th.px(40) * n
    assert last_line_bottom <= panel.bottom() - th.px(10)


def test_a_household_replayed_from_a_log(qtbot, client, db_path, tmp_path):
    log = tmp_path / "watch.csv"
    ids = ["p0001", "p0002", "p0003", "p0010"]
    log.write_text("profile_id,item_id,timestamp,completion,liked\n" + "".join(
        f"hh7,{i},{1_700_000_000 + 3600 * n},1.0,{1 if n == 0 else 0}\n" for n, i in enumerate(ids))
        + "hh8,p0005,1700000000,0.5,0\n")
    tv = open_tv(qtbot, client, None, viewer_log=(str(log), "hh7"))
    assert tv.profile == "user-hh7"
    with History(db_path) as h:
        finished = [e.item_id for e in h.events("user-hh7") if e.kind == "finish"]
    assert finished == ids[:3]                        # the earliest 75%
    proc = subprocess.run([sys.executable, "-m", "tvrec.cli", "recommend", "--db",
                           str(tmp_path / "r.db"), "--viewer-from-log", str(log), "--user", "hh7",
                           "--json"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "3 of 4 rows seeded" in proc.stderr
    import json
    assert json.loads(proc.stdout)["profile"] == "user-hh7"

