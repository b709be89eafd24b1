"""The simulator: a TV's home screen under a remote control, driving the real device engine.

Why Qt Widgets with one painted view (and not Qt Quick)? A TV UI is a few full-screen views
that the app paints itself; one ``QWidget`` with ``QPainter`` gives pixel-exact screenshots at
exactly 1280x720 or 1920x1080 offscreen with no GPU or scene-graph backend, the D-pad rules
live in plain Python (:mod:`simulator.focus`) where tests pin them down, and nothing but
``pyside6-essentials`` is needed. Qt Quick would buy declarative animation at the price of a
second language and a renderer that differs between machines.

``TvView`` is the screen (a stack of :mod:`simulator.screens`), ``RemotePanel`` the on-screen
remote, ``MainWindow`` puts them side by side. The engine runs in its own process
(:mod:`simulator.bridge`): the UI thread never waits for a recommendation.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QElapsedTimer, QEventLoop, QRectF, Qt, QTimer
from PySide6.QtGui import QColor, QFontMetrics, QImage, QKeyEvent, QPainter, QPen
from PySide6.QtWidgets import (
    QApplication,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from device.budget import profile as hardware_profile
from device.budget import verdicts
from simulator import theme as T
from simulator.bridge import EngineClient
from simulator.playback import PLAY_THROUGH_S
from simulator.screens import (
    BUTTONS,
    DEFAULT_PIN,
    HomeScreen,
    PlayerScreen,
    Screen,
    draw_text,
    rounded,
)

#: The remote, on a keyboard (after Kodi's and the Android emulator's mappings).
KEYMAP = {
    Qt.Key_Up: "up", Qt.Key_Down: "down", Qt.Key_Left: "left", Qt.Key_Right: "right",
    Qt.Key_Return: "ok", Qt.Key_Enter: "ok", Qt.Key_Escape: "back", Qt.Key_Backspace: "back",
    Qt.Key_H: "home", Qt.Key_Space: "play", Qt.Key_B: "info", Qt.Key_I: "info",
    Qt.Key_M: "menu", Qt.Key_Menu: "menu",
    **{getattr(Qt, f"Key_{d}"): d for d in "0123456789"},
}
#: A toast is read in one glance and then gets out of the way.
TOAST_SECONDS = 2.5
TICK_MS = 16
#: Holding OK this long opens the focused card's menu (as Google TV's long press).
LONG_PRESS_S = 0.6


class TvView(QWidget):
    """The TV screen: paints the top screen of its stack at the theme's resolution, scaled to
    the widget (a 1080p TV in a smaller window), and turns keys into remote buttons.

    Parameters
    ----------
    client : EngineClient
        The engine process.
    resolution : "720p" or "1080p"
    hardware : "entry", "mid" or "high"
        The box whose budgets the overlay judges against.
    profile : str, optional
        The viewer to start with (default: the first profile in the database).
    play_through_s : float
        Wall seconds for a programme to play to its end (the accelerated clock).
    """

    def __init__(self, client: EngineClient, *, resolution: str = "1080p", hardware: str = "entry",
                 profile: str | None = None, play_through_s: float = PLAY_THROUGH_S,
                 pin: str = DEFAULT_PIN, viewer_log: tuple[str, str] | None = None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.client = client
        self.theme = T.Theme.for_resolution(resolution)
        self.hardware = hardware_profile(hardware).name
        self.play_through_s = play_through_s
        self.profile = profile or ""
        self.profile_name = profile or ""
        self.kids_max: int | None = None  # the current profile's rating limit (kids profile)
        self.pin = pin
        self._ok_down: float | None = None  # when OK went down (long press = menu)
        self._ok_fired = False
        self.overlay_on = False
        self.stack: list[Screen] = []
        self._toast: tuple[str, float] | None = None
        self.setFocusPolicy(Qt.StrongFocus)
        self.setMinimumSize(self.theme.width // 3, self.theme.height // 3)
        self.setWindowTitle("tvrec simulator")
        self._clock = QElapsedTimer()
        self._clock.start()
        self._last_tick = 0.0
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._tick)
        self._timer.start(TICK_MS)
        client.answered.connect(self._on_answer)  # a bound slot: disconnected with the view
        if viewer_log is not None:  # a real household replayed from a log
            self.call("seed_from_log", viewer_log[0], viewer_log[1], profile,
                      on_result=self._replayed, on_error=self._fatal)
        else:
            self.call("seed_demo", on_result=self._profiles_ready, on_error=self._fatal)

    # ------------------------------------------------------------------ startup and profiles

    def call(self, method: str, *args, on_result=None, on_error=None) -> int:
        """Ask the engine; the answer is dropped if this view is gone by then."""
        return self.client.call(method, *args, on_result=on_result, on_error=on_error, owner=self)

    def _on_answer(self, *_args) -> None:
        self.update()

    def _replayed(self, answer) -> None:
        profile, report = answer
        self.profile = profile
        self.toast(f"Replayed user {report['user']}: {report['seeded']} of {report['rows']} rows"
                   + (f", {report['skipped_unknown']} not in the bundle"
                      if report["skipped_unknown"] else ""))
        self.call("profiles", on_result=self._profiles_ready, on_error=self._fatal)

    def _profiles_ready(self, profiles) -> None:
        known = {p[0]: p for p in profiles}
        if self.profile and self.profile not in known:
            self.call("add_profile", self.profile, self.profile, on_result=self._profiles_ready)
            return
        if not self.profile:
            self.profile = profiles[0][0]
        me = known.get(self.profile)
        self.profile_name = (me[1] if me else None) or self.profile
        self.kids_max = me[3] if me is not None and len(me) > 3 else None
        self.go_home()

    def _fatal(self, err: Exception) -> None:
        self.toast(str(err), seconds=3600)

    def switch_profile(self, profile_id: str, name: str, kids_max: int | None = None) -> None:
        """Another viewer: their own history, their own rows (leaving a kids profile asks for
        the PIN first: :class:`simulator.screens.ProfilesScreen`)."""
        self.profile, self.profile_name, self.kids_max = profile_id, name, kids_max
        self.go_home()

    def set_hardware(self, name: str) -> None:
        self.hardware = hardware_profile(name).name

    # ------------------------------------------------------------------ navigation

    @property
    def screen(self) -> Screen | None:
        return self.stack[-1] if self.stack else None

    @property
    def home_screen(self) -> HomeScreen | None:
        return self.stack[0] if self.stack and isinstance(self.stack[0], HomeScreen) else None

    def push(self, screen: Screen) -> None:
        self.stack.append(screen)
        screen.shown()
        self.update()

    def pop(self) -> None:
        """Back: leave the top screen; the home screen is never popped."""
        if len(self.stack) > 1:
            self.stack.pop().leave()
            self.stack[-1].shown()
        self.update()

    def go_home(self) -> None:
        """Home: everything above the home screen closes and the rows are fetched anew."""
        while len(self.stack) > 1:
            self.stack.pop().leave()
        if not self.stack:
            self.stack.append(HomeScreen(self))
        home = self.stack[0]
        if isinstance(home, HomeScreen) and home.grid.position is not None and len(home.grid.lengths) > 1:
            home.grid.focus(1, 0)  # Home lands on the first row, as on Android TV
        home.shown()
        self.update()

    def play(self, card, start: float | None = None) -> None:
        """Open the player for a card (asks the engine where its recording is first). Without
        ``start``, from the programme's resume point if it has one (Play on a Continue
        watching card resumes; the resume point is kept, not overwritten by a play at 0:00)."""
        def open_player(path, at):
            self.push(PlayerScreen(self, card, at, path))

        def with_start(at):
            self.call("media_path", card.item_id, on_result=lambda path: open_player(path, at),
                      on_error=lambda e: open_player(None, at))
        if start is None:
            self.call("resume_position", self.profile, card.item_id,
                      on_result=lambda at: with_start(float(at or 0.0)),
                      on_error=lambda e: with_start(0.0))
        else:
            with_start(start)

    def shutdown(self) -> None:
        """The simulator is closing: a programme still playing gets its stop event (its last
        position kept), sent before the engine process is told to end."""
        for screen in reversed(self.stack):
            if isinstance(screen, PlayerScreen):
                screen.stop()

    # ------------------------------------------------------------------ the remote

    def press(self, button: str) -> None:
        """One press of a remote button (the keyboard, the on-screen remote and --script all
        end here)."""
        if button not in BUTTONS:
            raise ValueError(f"unknown remote button {button!r}; known: {', '.join(BUTTONS)}")
        if button == "info":
            self.overlay_on = not self.overlay_on
        elif button == "home" and not isinstance(self.screen, PlayerScreen):
            self.go_home()
        elif self.screen is not None:
            self.screen.press(button)
        self.update()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt naming)
        button = KEYMAP.get(Qt.Key(event.key()))
        if button is None:
            super().keyPressEvent(event)
            return
        if button == "ok":  # OK acts on release; held past LONG_PRESS_S it opens the menu
            now = self._clock.elapsed() / 1000.0
            if not event.isAutoRepeat() or self._ok_down is None:
                self._ok_down, self._ok_fired = now, False
            elif not self._ok_fired and now - self._ok_down >= LONG_PRESS_S:
                self._ok_fired = True
                self.press("menu")
            return
        self.press(button)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if KEYMAP.get(Qt.Key(event.key())) != "ok" or event.isAutoRepeat():
            super().keyReleaseEvent(event)
            return
        fired, self._ok_down = self._ok_fired, None
        if not fired:
            self.press("ok")

    # ------------------------------------------------------------------ time

    def _tick(self) -> None:
        now = self._clock.elapsed() / 1000.0
        dt, self._last_tick = now - self._last_tick, now
        moved = self.screen.tick(min(dt, 0.1)) if self.screen is not None else False
        if self._toast is not None and now > self._toast[1]:
            self._toast = None
            moved = True
        if moved:
            self.update()

    def settle(self) -> None:
        if self.screen is not None:
            self.screen.settle()

    def toast(self, message: str, seconds: float = TOAST_SECONDS) -> None:
        self._toast = (message, self._clock.elapsed() / 1000.0 + seconds)
        self.update()

    @property
    def toast_text(self) -> str | None:
        return self._toast[0] if self._toast else None

    # ------------------------------------------------------------------ painting

    def paintEvent(self, event) -> None:  # noqa: N802
        p = QPainter(self)
        p.fillRect(self.rect(), Qt.black)
        th = self.theme
        s = min(self.width() / th.width, self.height() / th.height)
        p.translate((self.width() - th.width * s) / 2, (self.height() - th.height * s) / 2)
        p.scale(s, s)
        self.paint_tv(p)
        p.end()

    def paint_tv(self, p: QPainter) -> None:
        """Everything on the TV, at the theme's own resolution."""
        th = self.theme
        p.setRenderHint(QPainter.Antialiasing)
        p.setRenderHint(QPainter.SmoothPixmapTransform)
        p.setClipRect(QRectF(0, 0, th.width, th.height))
        p.fillRect(QRectF(0, 0, th.width, th.height), T.BACKGROUND)
        if self.screen is not None:
            self.screen.paint(p, th)
        else:
            draw_text(p, QRectF(th.safe_x, th.safe_y, th.width, th.px(80)),
                      "Starting the engine\u2026", th.font(T.Theme.TEXT_ROW), T.TEXT_DIM)
        if self.client.busy:  # a small pulse: the engine is working, the UI is not waiting
            phase = (self._clock.elapsed() % 1000) / 1000.0
            c = QColor(T.ACCENT)
            c.setAlphaF(0.35 + 0.65 * abs(1 - 2 * phase))
            p.setBrush(c)
            p.setPen(Qt.NoPen)
            r = th.px(9)
            p.drawEllipse(QRectF(th.width - th.safe_x + th.px(16), th.safe_y + th.px(24), 2 * r, 2 * r))
        if self.overlay_on:
            self.paint_overlay(p)
        if self._toast is not None:
            self.paint_toast(p, self._toast[0])

    def toast_rect(self, text: str) -> QRectF:
        """Where a toast goes: the top bar's free middle, right of the profile and settings
        buttons and left of the clock. Rows, row headers and the player's progress bar are all
        below the top bar, so a toast never covers them."""
        th = self.theme
        f = th.font(T.Theme.TEXT_BODY)
        left = th.safe_x + th.px(700)
        right = th.width - th.safe_x - th.px(160)
        w = min(right - left, QFontMetrics(f).horizontalAdvance(text) + th.px(64))
        return QRectF(right - w, th.safe_y + th.px(4), w, th.px(60))

    def paint_toast(self, p: QPainter, text: str) -> None:
        th = self.theme
        rect = self.toast_rect(text)
        rounded(p, rect, th.px(30), QColor(52, 60, 72), QPen(QColor(255, 255, 255, 70), th.px(2)))
        draw_text(p, rect.adjusted(th.px(24), 0, -th.px(24), 0), text, th.font(T.Theme.TEXT_BODY),
                  T.TEXT, Qt.AlignCenter)

    def budget_lines(self) -> list[tuple[str, str, str, bool | None]]:
        """(label, measured, budget, within budget or None when not measured yet), from the
        engine process's last figures judged by :func:`device.budget.verdicts`."""
        st = self.client.stats
        hw = hardware_profile(self.hardware)
        nan = float("nan")
        vs = {v.name: v for v in verdicts(
            hw, rss_peak_mb=st.get("rss_peak_mb", nan),
            cold_start_ms=st.get("cold_start_ms") if st.get("cold_start_ms") is not None else nan,
            home_ms_p95=st.get("home_ms", nan), embed_ms_p50=st.get("embed_ms", nan),
            model_bytes=st.get("model_bytes"))}

        def line(name, label, fmt):
            v = vs.get(name)
            if v is None or v.host != v.host:  # NaN: nothing measured yet
                return (label, "\u2013", fmt(v.budget) if v else "\u2013", None)
            est = f" (est. {fmt(v.box_estimate)})" if v.estimated else ""
            return (label, fmt(v.host) + est, fmt(v.budget), v.ok)

        ms = lambda x: f"{x:.1f} ms" if x < 100 else f"{x:.0f} ms"  # noqa: E731
        out = [
            line("home_ms_p95", "home()  last", ms),
            line("embed_ms_p50", "decode+embed", ms),
            line("cold_start_ms", "cold start", ms),
            line("engine_rss_mb", "engine RSS peak", lambda x: f"{x:.0f} MB"),
            line("model_bytes", "model size", lambda x: f"{x / 1000:.0f} kB"),
        ]
        rss = st.get("rss_mb")
        if rss is not None:
            out.insert(4, ("engine RSS now", f"{rss:.0f} MB", "", None))
        return out

    def overlay_rect(self, n_lines: int) -> QRectF:
        """The budget panel: tall enough for its heading (88 px after a 14 px top margin), every
        line (40 px) and a bottom margin, so the last line sits inside it."""
        th = self.theme
        w = th.px(860)
        return QRectF(th.width - th.safe_x - w, th.safe_y + th.px(80), w,
                      th.px(14) + th.px(88) + th.px(40) * n_lines + th.px(18))

    def paint_overlay(self, p: QPainter) -> None:
        th = self.theme
        hw = hardware_profile(self.hardware)
        lines = self.budget_lines()
        w, lh = th.px(860), th.px(40)
        rect = self.overlay_rect(len(lines))
        # opaque: the figures must be readable over any poster
        rounded(p, rect, th.px(14), QColor(12, 14, 18), QPen(QColor(255, 255, 255, 60), th.px(2)))
        x, y = rect.x() + th.px(22), rect.y() + th.px(14)
        draw_text(p, QRectF(x, y, w - th.px(44), lh),
                  f"Budget: {hw.name} box ({hw.ram_mb // 1024} GB, {hw.cpu})",
                  th.font(T.Theme.TEXT_SMALL, True), T.TEXT)
        draw_text(p, QRectF(x, y + lh, w - th.px(44), lh),
                  f"est. = host \u00d7 {hw.slowdown:g} (engine process)", th.font(T.Theme.TEXT_SMALL),
                  T.TEXT_DIM)
        y += th.px(88)
        for label, value, budget, ok in lines:
            colour = T.TEXT_DIM if ok is None else (T.OK_GREEN if ok else T.OVER_RED)
            draw_text(p, QRectF(x, y, th.px(250), lh), label, th.font(T.Theme.TEXT_SMALL), T.TEXT)
            draw_text(p, QRectF(x + th.px(250), y, th.px(400), lh), value,
                      th.font(T.Theme.TEXT_SMALL, True), colour)
            draw_text(p, QRectF(x + th.px(650), y, th.px(166), lh), budget and f"/ {budget}",
                      th.font(T.Theme.TEXT_SMALL), T.TEXT_DIM, Qt.AlignRight | Qt.AlignVCenter)
            y += lh

    def render_image(self) -> QImage:
        """The TV screen at exactly its resolution (for screenshots and tests)."""
        th = self.theme
        img = QImage(th.width, th.height, QImage.Format_RGB32)
        img.fill(Qt.black)
        p = QPainter(img)
        self.paint_tv(p)
        p.end()
        return img


class RemotePanel(QWidget):
    """An on-screen remote: the same buttons as the keyboard, for mouse users."""

    LAYOUT = [
        (None, "home", None),
        (None, "up", None),
        ("left", "ok", "right"),
        (None, "down", None),
        ("back", "play", "info"),
        (None, "menu", None),
    ]
    LABELS = {"up": "\u25b2", "down": "\u25bc", "left": "\u25c0", "right": "\u25b6", "ok": "OK",
              "back": "\u2190 Back", "home": "\u2302 Home", "play": "\u25b6\u275a\u275a", "info": "Budget",
              "menu": "\u2261 Menu"}

    def __init__(self, tv: TvView, parent: QWidget | None = None):
        super().__init__(parent)
        self.tv = tv
        self.buttons: dict[str, QPushButton] = {}
        grid = QGridLayout()
        for r, line in enumerate(self.LAYOUT):
            for c, name in enumerate(line):
                if name is None:
                    continue
                b = QPushButton(self.LABELS[name])
                b.setFocusPolicy(Qt.NoFocus)  # the keyboard focus stays on the TV
                b.setMinimumSize(64, 48)
                b.setToolTip(f"{name} ({_key_names(name)})")
                b.clicked.connect(lambda _=False, n=name: self._press(n))
                grid.addWidget(b, r, c)
                self.buttons[name] = b
        box = QVBoxLayout(self)
        box.addWidget(QLabel("Remote"))
        box.addLayout(grid)
        help_text = QLabel("Keys: arrows, Enter = OK (hold: menu), Esc/Backspace = Back,\n"
                           "H = Home, Space = Play/Pause, M = card menu, B = budget, "
                           "0-9 = PIN")
        help_text.setWordWrap(True)
        box.addWidget(help_text)
        box.addStretch(1)
        self.setFixedWidth(240)

    def _press(self, name: str) -> None:
        self.tv.press(name)
        self.tv.setFocus()


def _key_names(button: str) -> str:
    names = [Qt.Key(k).name.replace("Key_", "") for k, b in KEYMAP.items() if b == button]
    return ", ".join(names)


class MainWindow(QWidget):
    """The TV and its remote side by side."""

    def __init__(self, tv: TvView):
        super().__init__()
        self.tv = tv
        self.remote = RemotePanel(tv)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(tv, 1)
        lay.addWidget(self.remote)
        self.setWindowTitle(f"tvrec simulator - {tv.theme.width}x{tv.theme.height}, {tv.hardware} box")

    def closeEvent(self, event) -> None:  # noqa: N802
        self.tv.shutdown()  # a programme still playing writes its stop
        super().closeEvent(event)


# ---------------------------------------------------------------------------- running it


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Run the Qt event loop until ``predicate()`` holds (or the timeout); returns it."""
    loop = QEventLoop()
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        loop.processEvents(QEventLoop.AllEvents, 20)
        time.sleep(0.005)
    return True


def wait_idle(tv: TvView, timeout: float = 30.0) -> bool:
    """Until the engine has answered everything asked so far (answers may ask for more)."""
    ok = True
    for _ in range(5):
        ok = wait_until(lambda: not tv.client.busy, timeout)
        wait_until(lambda: False, 0.03)  # let queued signals land
        if not tv.client.busy:
            break
    return ok


def parse_script(script: str) -> list[str]:
    """``"down,right,ok,play"`` -> buttons; ``wait`` (one second of playback time) and
    ``wait:SECONDS`` are allowed between them."""
    steps = [s.strip().lower() for s in script.replace(" ", ",").split(",") if s.strip()]
    for s in steps:
        if s not in BUTTONS and s != "wait" and not s.startswith("wait:"):
            raise ValueError(f"--script: unknown key {s!r}; known: {', '.join(BUTTONS)}, wait, wait:SECONDS")
    return steps


def run_script(tv: TvView, steps: list[str], frames_dir: Path | None = None) -> None:
    if frames_dir is not None:
        frames_dir.mkdir(parents=True, exist_ok=True)
        tv.settle()
        tv.render_image().save(str(frames_dir / "000-start.png"))
    for i, step in enumerate(steps, start=1):
        if step.startswith("wait"):
            seconds = float(step.split(":", 1)[1]) if ":" in step else 1.0
            wait_until(lambda: False, seconds)
        else:
            tv.press(step)
        wait_idle(tv)
        tv.settle()
        if frames_dir is not None:
            tv.render_image().save(str(frames_dir / f"{i:03d}-{step.replace(':', '_')}.png"))


def default_db() -> Path:
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "tvrec" / "simulator-history.db"


def main(bundle: str | Path, db: str | Path | None = None, *, hardware: str = "entry",
         resolution: str = "1080p", profile: str | None = None, media: str | Path | None = None,
         screenshot: str | Path | None = None, script: str = "", frames: str | Path | None = None,
         play_through_s: float = PLAY_THROUGH_S, quit_after: float | None = None,
         viewer_log: str | Path | None = None, user: str | None = None, pin: str = DEFAULT_PIN) -> int:
    """``tvrec sim``: the window, or (with ``screenshot``) one headless run that saves a PNG."""
    steps = parse_script(script) if script else []
    hardware_profile(hardware)  # unknown names fail before any window opens
    T.Theme.for_resolution(resolution)
    db = Path(db) if db else default_db()
    db.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # owner-only: a household's viewing
    if screenshot is not None and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    app = QApplication.instance() or QApplication([])
    client = EngineClient(str(bundle), str(db))
    tv = None
    try:
        tv = TvView(client, resolution=resolution, hardware=hardware, profile=profile,
                    play_through_s=play_through_s, pin=pin,
                    viewer_log=(str(viewer_log), str(user)) if viewer_log else None)
        if media:
            tv.call("add_media_dir", str(media),
                           on_result=lambda r: _media_report(tv, r), on_error=lambda e: tv.toast(str(e)))
        if screenshot is not None:
            ready = wait_until(lambda: tv.home_screen is not None and tv.home_screen.rows is not None
                               or client.error is not None, 120)
            if client.error is not None:
                print(f"tvrec sim: {client.error}", file=sys.stderr)
                return 2
            if not ready:
                print("tvrec sim: the engine did not answer within 120 s", file=sys.stderr)
                return 2
            wait_idle(tv)
            run_script(tv, steps, Path(frames) if frames else None)
            tv.settle()
            out = Path(screenshot)
            out.parent.mkdir(parents=True, exist_ok=True)
            if not tv.render_image().save(str(out)):
                print(f"tvrec sim: could not write {out}", file=sys.stderr)
                return 2
            print(f"wrote {out} ({tv.theme.width}x{tv.theme.height})")
            tv.shutdown()
            wait_idle(tv)
            return 0
        window = MainWindow(tv)
        th = tv.theme
        screen = app.primaryScreen().availableGeometry() if app.primaryScreen() else None
        w, h = th.width, th.height
        if screen is not None:
            f = min(1.0, (screen.width() - 260) / w, (screen.height() - 40) / h)
            w, h = int(w * f), int(h * f)
        window.resize(w + 240, h)
        window.show()
        tv.setFocus()
        if steps:
            QTimer.singleShot(500, lambda: run_script(tv, steps))
        if quit_after is not None:  # kiosk loops and smoke tests: close the window on a timer
            QTimer.singleShot(int(quit_after * 1000), window.close)
        return app.exec()
    finally:
        if tv is not None:
            tv.shutdown()  # a stop for a programme still playing, queued before the close
        client.close()


def _media_report(tv: TvView, report: dict) -> None:
    if report["added"]:
        tv.toast(f"{len(report['added'])} recordings added")
    if report["errors"]:
        tv.toast(f"{len(report['errors'])} recordings could not be read: "
                 + report["errors"][0][:80])
    if tv.home_screen is not None and tv.screen is tv.home_screen:
        tv.home_screen.refresh()
