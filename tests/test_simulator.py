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
                                   "musicnn", "librosa", "wordllama", "tokenizers", "torch"],
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
    assert tv.home_screen.rows[0].cards[0].reason.endswith(card.title)


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
        assert {p.id for p in h.profiles()} == {"alex", "sam"}  # the demo viewers were seeded
