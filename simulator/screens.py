"""The screens of the TV: home, details, player, settings, profiles.

Each screen holds its own state and focus, reacts to remote buttons (:meth:`Screen.press`),
moves its animations on (:meth:`Screen.tick`) and paints itself at the theme's resolution
(:meth:`Screen.paint`). The app (:mod:`simulator.app`) owns the stack of screens, the engine
client and the overlay; screens ask it for what they need (``self.app.call(...)``).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QFontMetrics, QImage, QPainter, QPainterPath, QPen

from simulator import theme as T
from simulator.focus import FocusGrid
from simulator.playback import FrameSource, Playback
from simulator.posters import poster

if TYPE_CHECKING:  # pragma: no cover
    from device.engine import Card, Row
    from simulator.app import TvView

#: Buttons of the remote (and their names in --script); "menu" opens a card's menu (also a
#: long press of OK), the digits type a PIN.
DIGITS = tuple("0123456789")
BUTTONS = ("up", "down", "left", "right", "ok", "back", "home", "play", "info", "menu") + DIGITS
#: Scroll animation time constant (s): ~250 ms to settle, as Leanback rows do.
SCROLL_TAU = 0.06
HARDWARE_PROFILES = ("entry", "mid", "high")


# ------------------------------------------------------------------------------ drawing helpers


def draw_text(p: QPainter, rect: QRectF, text: str, font, colour: QColor,
              flags=Qt.AlignLeft | Qt.AlignVCenter, elide: bool = True) -> None:
    p.setFont(font)
    p.setPen(colour)
    if elide:
        text = QFontMetrics(font).elidedText(text, Qt.ElideRight, int(rect.width()))
    p.drawText(rect, flags, text)


def wrap_lines(text: str, font, width: float, max_lines: int = 2) -> list[str]:
    """``text`` wrapped at word boundaries into at most ``max_lines`` lines of ``width``
    pixels; the last line is elided at its end ("Super Cycling Cup Final #10" never loses its
    middle). A word longer than a line is cut (elided) on its own line."""
    fm = QFontMetrics(font)
    words, lines = text.split(), []
    while words and len(lines) < max_lines:
        line = words.pop(0)
        while words and fm.horizontalAdvance(f"{line} {words[0]}") <= width:
            line = f"{line} {words.pop(0)}"
        lines.append(line)
    if words:  # what did not fit goes to the last line, elided at its end
        lines[-1] = f"{lines[-1]} {' '.join(words)}"
    if lines:
        lines[-1] = fm.elidedText(lines[-1], Qt.ElideRight, int(width))
        lines[:-1] = [fm.elidedText(line, Qt.ElideRight, int(width)) for line in lines[:-1]]
    return lines


def rounded(p: QPainter, rect: QRectF, radius: float, fill: QColor | None = None,
            pen: QPen | None = None) -> None:
    path = QPainterPath()
    path.addRoundedRect(rect, radius, radius)
    if fill is not None:
        p.fillPath(path, fill)
    if pen is not None:
        p.setPen(pen)
        p.setBrush(Qt.NoBrush)
        p.drawPath(path)


def fmt_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def approach(current: float, target: float, dt: float) -> float:
    """One step of exponential smoothing towards ``target``; snaps when within half a pixel."""
    if abs(target - current) < 0.5:
        return target
    return target + (current - target) * math.exp(-dt / SCROLL_TAU)


def paint_card(p: QPainter, th: T.Theme, card: Card, x: float, y: float, focused: bool) -> None:
    """A poster card with its title and reason underneath; the focused one grows and glows."""
    w, h = th.card_w, th.card_h
    scale = 1.1 if focused else 1.0
    pw, ph = w * scale, h * scale
    px, py = x - (pw - w) / 2, y - (ph - h) / 2
    rect = QRectF(px, py, pw, ph)
    path = QPainterPath()
    path.addRoundedRect(rect, th.px(10), th.px(10))
    p.save()
    p.setClipPath(path, Qt.IntersectClip)
    p.drawPixmap(rect.toRect(), poster(card.item_id, card.genres, int(pw), int(ph), card.title))
    p.restore()
    if card.genres:
        draw_text(p, QRectF(px + th.px(14), py + th.px(10), pw - th.px(28), th.px(32)),
                  card.genres[0].upper(), th.font(T.Theme.TEXT_SMALL, True), QColor(255, 255, 255, 220))
    badge_text = "RECORDED" if card.source == "local" else getattr(card, "episode", "")
    if badge_text:  # the recording badge, or the episode marker ("E3", "S2 E5")
        bf = th.font(T.Theme.TEXT_SMALL, True)
        bw = QFontMetrics(bf).horizontalAdvance(badge_text) + th.px(24)
        badge = QRectF(px + pw - bw - th.px(14), py + th.px(10), bw, th.px(34))
        rounded(p, badge, th.px(6), QColor(0, 0, 0, 190))
        draw_text(p, badge, badge_text, bf, T.TEXT, Qt.AlignCenter)
    if card.progress is not None:
        bar = QRectF(px + th.px(14), py + ph - th.px(22), pw - th.px(28), th.px(8))
        rounded(p, bar, th.px(4), QColor(255, 255, 255, 90))
        done = QRectF(bar.x(), bar.y(), bar.width() * float(min(max(card.progress, 0), 1)), bar.height())
        rounded(p, done, th.px(4), T.ACCENT)
    if focused:
        rounded(p, rect.adjusted(-th.px(3), -th.px(3), th.px(3), th.px(3)), th.px(12),
                pen=QPen(T.FOCUS_OUTLINE, th.px(6)))
    ty = y + h + th.px(16)
    # Two lines, ellipsised at the end; the same font focused or not (a bold focused title
    # would be cut harder than its neighbours'): focus shows in colour and the outline.
    title_font = th.font(T.Theme.TEXT_BODY)
    lh, rh = th.px(33), th.px(29)
    title_lines = wrap_lines(card.title, title_font, w)
    for n, line in enumerate(title_lines):
        draw_text(p, QRectF(x, ty + n * lh, w, lh), line, title_font,
                  T.TEXT if focused else QColor(T.TEXT).darker(112), elide=False)
    # The reason reads whole ("Because you watched" + the show): up to two lines of its own.
    reason_font = th.font(T.Theme.TEXT_SMALL)
    ry = ty + len(title_lines) * lh + th.px(4)
    for n, line in enumerate(wrap_lines(card.reason, reason_font, w)):
        draw_text(p, QRectF(x, ry + n * rh, w, rh), line, reason_font, T.TEXT_DIM, elide=False)


def row_offset(th: T.Theme, n_cards: int, col: int) -> float:
    """Horizontal scroll of a row of ``n_cards`` that keeps card ``col`` in view: the focused
    card sits second from the left (one card of context), never scrolling past the row's end."""
    step = th.card_w + th.card_gap
    visible = th.width - 2 * th.safe_x
    max_off = max(0.0, n_cards * step - th.card_gap - visible + th.px(24))
    return float(min(max(0, col - 1) * step, max_off))


def paint_row(p: QPainter, th: T.Theme, cards: Sequence[Card], y: float, offset: float,
              focused: int | None) -> None:
    """A row of cards from the title-safe left edge, scrolled by ``offset``; the focused card
    is drawn last so its glow lies over its neighbours."""
    step = th.card_w + th.card_gap
    for c, card in enumerate(cards):
        cx = th.safe_x + c * step - offset
        if c != focused and not (cx > th.width or cx + th.card_w < 0):
            paint_card(p, th, card, cx, y, False)
    if focused is not None and 0 <= focused < len(cards):
        paint_card(p, th, cards[focused], th.safe_x + focused * step - offset, y, True)


def paint_button(p: QPainter, th: T.Theme, rect: QRectF, label: str, focused: bool) -> None:
    if focused:
        grow = th.px(4)
        rect = rect.adjusted(-grow, -grow, grow, grow)
    rounded(p, rect, rect.height() / 2, T.TEXT if focused else T.SURFACE)
    draw_text(p, rect, label, th.font(T.Theme.TEXT_BODY, True),
              T.BACKGROUND if focused else T.TEXT, Qt.AlignCenter)


# ------------------------------------------------------------------------------ screens


class Screen:
    """Base: a screen reacts to buttons, animates, paints."""

    name = "screen"

    def __init__(self, app: TvView):
        self.app = app

    def press(self, button: str) -> None:  # pragma: no cover - each screen has its own
        pass

    def tick(self, dt: float) -> bool:
        """Advance animations by ``dt`` seconds; True if something moved (repaint)."""
        return False

    def settle(self) -> None:
        """Finish every animation at once (headless screenshots)."""

    def shown(self) -> None:
        """Called when the screen comes (back) to the top of the stack."""

    def leave(self) -> None:
        """Called when the screen is removed from the stack."""

    def paint(self, p: QPainter, th: T.Theme) -> None:  # pragma: no cover
        pass


class HomeScreen(Screen):
    """Rows of cards under a top bar (profile chip, settings)."""

    name = "home"
    TOP = ("profile", "settings")

    def __init__(self, app: TvView):
        super().__init__(app)
        self.rows: list[Row] | None = None
        self.error: str | None = None
        self.grid = FocusGrid([len(self.TOP)])
        self._y = 0.0
        self._x: dict[int, float] = {}
        self._request = 0

    # -------------------------------------------------------------- data

    def refresh(self) -> None:
        """Ask the engine for this profile's rows (the old ones stay on screen meanwhile)."""
        self._request += 1
        token = self._request
        self.app.call("home", self.app.profile,
                             on_result=lambda rows: self._set_rows(rows, token),
                             on_error=lambda e: self._failed(e, token))

    def _set_rows(self, rows: list[Row], token: int) -> None:
        if token != self._request:
            return  # an older answer; a newer request is on its way
        first = self.rows is None
        self.rows = list(rows)
        self.error = None
        lengths = [len(self.TOP)] + [len(r.cards) for r in self.rows]
        keys = [list(self.TOP)] + [[c.item_id for c in r.cards] for r in self.rows]
        self.grid.set_rows(lengths, keys)
        if first and len(lengths) > 1:
            self.grid.focus(1, 0)  # a home screen opens on its first row, not the top bar
        self.app.update()

    def _failed(self, err: Exception, token: int) -> None:
        if token == self._request:
            self.error = str(err)
            self.app.toast(str(err))

    def shown(self) -> None:
        self.refresh()

    @property
    def focused_card(self) -> Card | None:
        pos = self.grid.position
        if pos is None or pos[0] == 0 or not self.rows:
            return None
        return self.rows[pos[0] - 1].cards[pos[1]]

    # -------------------------------------------------------------- input

    def press(self, button: str) -> None:
        if button in ("up", "down", "left", "right"):
            self.grid.move(button)
            return
        pos = self.grid.position
        if pos is None:
            return
        if pos[0] == 0:
            if button == "ok":
                target = self.TOP[pos[1]]
                self.app.push(ProfilesScreen(self.app) if target == "profile" else SettingsScreen(self.app))
            return
        card = self.focused_card
        if button == "ok" and card is not None:
            self.app.push(DetailsScreen(self.app, card))
        elif button == "play" and card is not None:
            self.app.play(card)  # from its resume point, if it has one
        elif button == "menu" and card is not None:
            self.app.push(CardMenuScreen(self.app, card, self.rows[pos[0] - 1].kind))
        elif button == "back":
            if pos != (1, 0) and len(self.grid.lengths) > 1:  # Back on home: to the first card
                self.grid.focus(1, 0)

    # -------------------------------------------------------------- layout and animation

    def _targets(self, th: T.Theme) -> tuple[float, dict[int, float]]:
        r, c = self.grid.row, self.grid.col
        y = max(0, r - 1) * th.row_h  # the focused row sits at the top of the rows area
        xs = dict(self._x)
        if r >= 1 and self.rows:
            xs[r] = row_offset(th, len(self.rows[r - 1].cards), c)
        return float(y), xs

    def tick(self, dt: float) -> bool:
        ty, txs = self._targets(self.app.theme)
        moved = False
        ny = approach(self._y, ty, dt)
        moved |= ny != self._y
        self._y = ny
        for r, tx in txs.items():
            nx = approach(self._x.get(r, 0.0), tx, dt)
            moved |= nx != self._x.get(r, 0.0)
            self._x[r] = nx
        return moved

    def settle(self) -> None:
        self._y, self._x = self._targets(self.app.theme)

    # -------------------------------------------------------------- painting

    def paint(self, p: QPainter, th: T.Theme) -> None:
        x0, y0 = th.safe_x, th.safe_y
        # Top bar: product name, profile chip, settings, clock.
        draw_text(p, QRectF(x0, y0, th.px(300), th.px(64)), "tvrec", th.font(44, True), T.ACCENT)
        names = {"profile": f"\u25cf {self.app.profile_name}", "settings": "\u2699 Settings"}
        bx = x0 + th.px(260)
        for i, key in enumerate(self.TOP):
            label = names[key]
            w = QFontMetrics(th.font(T.Theme.TEXT_BODY, True)).horizontalAdvance(label) + th.px(56)
            paint_button(p, th, QRectF(bx, y0 + th.px(6), w, th.px(56)), label,
                         self.grid.position == (0, i))
            bx += w + th.px(24)
        draw_text(p, QRectF(th.width - th.safe_x - th.px(300), y0, th.px(300), th.px(64)),
                  time.strftime("%H:%M"), th.font(T.Theme.TEXT_ROW), T.TEXT_DIM,
                  Qt.AlignRight | Qt.AlignVCenter)
        top = y0 + th.header_h
        if self.rows is None:
            msg = self.error or "Loading your recommendations\u2026"
            draw_text(p, QRectF(x0, top + th.px(40), th.width - 2 * x0, th.px(60)), msg,
                      th.font(T.Theme.TEXT_ROW), T.TEXT_DIM)
            return
        if not self.rows:
            draw_text(p, QRectF(x0, top + th.px(40), th.width - 2 * x0, th.px(60)),
                      "Nothing to recommend yet", th.font(T.Theme.TEXT_ROW), T.TEXT_DIM)
            return
        p.save()
        p.setClipRect(QRectF(0, top, th.width, th.height - top))
        for r, row in enumerate(self.rows, start=1):
            ry = top + (r - 1) * th.row_h - self._y
            if ry > th.height or ry + th.row_h < top:
                continue
            draw_text(p, QRectF(x0, ry, th.width - 2 * x0, th.px(48)), row.title,
                      th.font(T.Theme.TEXT_ROW, True), T.TEXT)
            focused = self.grid.col if self.grid.position == (r, self.grid.col) else None
            paint_row(p, th, row.cards, ry + th.px(68), self._x.get(r, 0.0), focused)
        p.restore()


class DetailsScreen(Screen):
    """One programme: what it is, why it is recommended, Play / Like / Dislike, more like it."""

    name = "details"
    ACTIONS = ("play", "like", "dislike")

    def __init__(self, app: TvView, card: Card):
        super().__init__(app)
        self.card = card
        self.similar: list[Card] | None = None
        self.grid = FocusGrid([len(self.ACTIONS)])
        self.media_path: str | None = None
        self.resume_at = 0.0
        self._x = 0.0
        self.verdict: str | None = None
        app.call("similar", card.item_id, 12, app.profile, on_result=self._set_similar,
                 on_error=lambda e: app.toast(str(e)))
        app.call("media_path", card.item_id, on_result=self._set_media)

    def shown(self) -> None:
        self.app.call("resume_position", self.app.profile, self.card.item_id,
                             on_result=self._set_resume)

    @property
    def why(self) -> str:
        """Why this programme is here. A Continue-watching card's reason ("Resume at 30%") was
        true when the home screen was drawn; the live resume point (re-read whenever this page
        is shown, e.g. back from the player) says it now."""
        c = self.card
        if c.kind == "continue":
            return (f"You stopped at {self.resume_at / max(c.duration, 1):.0%}"
                    if self.resume_at > 0 else "You have watched it")
        return c.reason or "From the catalog"

    def _set_resume(self, pos: float) -> None:
        self.resume_at = float(pos or 0.0)
        self.app.update()

    def _set_media(self, path: str | None) -> None:
        self.media_path = path
        self.app.update()

    def _set_similar(self, cards: list[Card]) -> None:
        self.similar = list(cards)
        self.grid.set_rows([len(self.ACTIONS), len(self.similar)],
                           [list(self.ACTIONS), [c.item_id for c in self.similar]])
        self.app.update()

    def press(self, button: str) -> None:
        if button in ("up", "down", "left", "right"):
            self.grid.move(button)
            return
        pos = self.grid.position
        if button == "back":
            self.app.pop()
        elif button == "play":
            self.app.play(self.card, self.resume_at)
        elif button == "menu":
            self.app.push(CardMenuScreen(self.app, self.card, "details"))
        elif button == "ok" and pos is not None:
            if pos[0] == 0:
                action = self.ACTIONS[pos[1]]
                if action == "play":
                    self.app.play(self.card, self.resume_at)
                else:
                    self.app.call(
                        "record", self.app.profile, self.card.item_id, action,
                        on_result=lambda eid, a=action: self._rated(a, eid),
                        on_error=lambda e: self.app.toast(str(e)))
            elif self.similar:
                self.app.push(DetailsScreen(self.app, self.similar[pos[1]]))

    def _rated(self, action: str, event_id: Any) -> None:
        if event_id is None:
            self.app.toast("Watch history is paused: nothing was recorded")
            return
        self.verdict = action
        self.app.toast("Liked: you will see more like this" if action == "like"
                       else "Disliked: you will see less like this")

    def tick(self, dt: float) -> bool:
        target = self._target()
        nx = approach(self._x, target, dt)
        moved = nx != self._x
        self._x = nx
        return moved

    def _target(self) -> float:
        th = self.app.theme
        if self.grid.row != 1 or not self.similar:
            return 0.0
        return row_offset(th, len(self.similar), self.grid.col)

    def settle(self) -> None:
        self._x = self._target()

    def paint(self, p: QPainter, th: T.Theme) -> None:
        c = self.card
        x0, y0 = th.safe_x, th.safe_y
        art_w = int(th.width * 0.5)
        art_h = int(art_w * 9 / 16)
        art = QRectF(th.width - art_w, 0, art_w, art_h)
        p.drawPixmap(art.toRect(), poster(c.item_id, c.genres, art_w, art_h, c.title))
        p.fillRect(art, QColor(16, 19, 24, 110))
        title_rect = QRectF(x0, y0 + th.px(20), th.width * 0.5 - x0 - th.px(24), th.px(80))
        title_font = th.font(T.Theme.TEXT_TITLE, True)
        draw_text(p, title_rect, QFontMetrics(title_font).elidedText(
            c.title, Qt.ElideMiddle, int(title_rect.width())), title_font, T.TEXT, elide=False)
        meta = " \u00b7 ".join(filter(None, [
            ", ".join(g.title() for g in c.genres) or None,
            f"{max(1, round(c.duration / 60))} min",
            "Recorded on this box" if c.source == "local" else None,
        ]))
        draw_text(p, QRectF(x0, y0 + th.px(110), th.width * 0.6, th.px(44)), meta,
                  th.font(T.Theme.TEXT_BODY), T.TEXT_DIM)
        why = self.why
        draw_text(p, QRectF(x0, y0 + th.px(166), th.width * 0.6, th.px(44)),
                  f"Why: {why}", th.font(T.Theme.TEXT_BODY), T.TEXT)
        if self.resume_at > 0:
            draw_text(p, QRectF(x0, y0 + th.px(214), th.width * 0.6, th.px(40)),
                      f"Resume from {fmt_duration(self.resume_at)}", th.font(T.Theme.TEXT_SMALL),
                      T.ACCENT)
        labels = {"play": "\u25b6 Resume" if self.resume_at > 0 else "\u25b6 Play",
                  "like": "\u2764 Liked" if self.verdict == "like" else "\u2764 Like",
                  "dislike": "\u2716 Disliked" if self.verdict == "dislike" else "\u2716 Dislike"}
        bx, by = x0, y0 + th.px(280)
        for i, a in enumerate(self.ACTIONS):
            w = th.px(220)
            paint_button(p, th, QRectF(bx, by, w, th.px(68)), labels[a], self.grid.position == (0, i))
            bx += w + th.px(28)
        ry = y0 + th.px(420)
        draw_text(p, QRectF(x0, ry, th.width - 2 * x0, th.px(48)), "More like this",
                  th.font(T.Theme.TEXT_ROW, True), T.TEXT)
        if self.similar is None:
            draw_text(p, QRectF(x0, ry + th.px(70), th.width, th.px(40)), "Loading\u2026",
                      th.font(T.Theme.TEXT_BODY), T.TEXT_DIM)
            return
        focused = self.grid.col if self.grid.position == (1, self.grid.col) else None
        paint_row(p, th, self.similar, ry + th.px(68), self._x, focused)


class PlayerScreen(Screen):
    """Full-screen playback: real frames when the box has the recording, else the poster."""

    name = "player"
    OSD_SECONDS = 4.0

    def __init__(self, app: TvView, card: Card, start: float = 0.0, media_path: str | None = None):
        super().__init__(app)
        self.card = card
        self.playback = Playback(card.duration, start, play_through_s=app.play_through_s)
        self.frames: FrameSource | None = None
        self.frame: QImage | None = None
        self._frame_t = -1.0
        self.media_error: str | None = None
        if media_path:
            try:
                self.frames = FrameSource(media_path, width=min(960, app.theme.width))
            except Exception as e:  # noqa: BLE001 -- a bad recording shows the poster instead
                self.media_error = f"{card.title}: cannot play the recording ({e})"
                app.toast(self.media_error)
        self._osd = self.OSD_SECONDS
        self._record(self.playback.start())

    def _record(self, events: Sequence[tuple[str, float | None]]) -> None:
        for kind, pos in events:
            self.app.call("record", self.app.profile, self.card.item_id, kind, pos,
                                 on_error=lambda e: self.app.toast(str(e)))
        if self.playback.finished:
            self.app.toast(f"Finished: {self.card.title}")
            self.app.pop()

    def press(self, button: str) -> None:
        self._osd = self.OSD_SECONDS
        if button in ("play", "ok"):
            self.playback.toggle()
        elif button in ("left", "right"):
            self._record(self.playback.seek(-1 if button == "left" else 1))
        elif button == "back":
            self.stop()
            self.app.pop()
        elif button == "home":
            self.stop()
            self.app.go_home()

    def stop(self) -> None:
        self._record(self.playback.stop())
        self.leave()

    def leave(self) -> None:
        if self.frames is not None:
            self.frames.close()
            self.frames = None

    def tick(self, dt: float) -> bool:
        self._osd = max(0.0, self._osd - dt)
        if self.playback.playing:
            self._record(self.playback.advance(dt))
        self._update_frame()
        return True

    def settle(self) -> None:
        self._update_frame()

    def _update_frame(self) -> None:
        if self.frames is None:
            return
        t = self.playback.position
        if abs(t - self._frame_t) < 1 / 30:
            return
        arr = self.frames.frame_at(t)
        self._frame_t = t
        if arr is not None:
            arr = np.ascontiguousarray(arr)
            h, w, _ = arr.shape
            self.frame = QImage(arr.data, w, h, 3 * w, QImage.Format_RGB888).copy()

    def paint(self, p: QPainter, th: T.Theme) -> None:
        c = self.card
        p.fillRect(QRectF(0, 0, th.width, th.height), Qt.black)
        if self.frame is not None:
            img = self.frame
            s = min(th.width / img.width(), th.height / img.height())
            w, h = img.width() * s, img.height() * s
            p.drawImage(QRectF((th.width - w) / 2, (th.height - h) / 2, w, h), img)
        else:
            art_w = int(th.width * 0.6)
            art_h = int(art_w * 9 / 16)
            rect = QRectF((th.width - art_w) / 2, th.safe_y + th.px(40), art_w, art_h)
            p.drawPixmap(rect.toRect(), poster(c.item_id, c.genres, art_w, art_h, c.title))
            draw_text(p, QRectF(0, rect.bottom() + th.px(20), th.width, th.px(40)),
                      "No recording of this programme on the box: simulated playback",
                      th.font(T.Theme.TEXT_SMALL), T.TEXT_DIM, Qt.AlignCenter)
        if self._osd <= 0 and self.playback.playing:
            return
        # The on-screen display: title, state, progress on the accelerated clock.
        bar_top = th.height - th.safe_y - th.px(150)
        p.fillRect(QRectF(0, bar_top - th.px(30), th.width, th.height - bar_top + th.px(30)),
                   QColor(0, 0, 0, 170))
        x0 = th.safe_x
        state = "\u25b6" if self.playback.playing else "\u275a\u275a"
        draw_text(p, QRectF(x0, bar_top, th.width - 2 * x0, th.px(50)), f"{state}  {c.title}",
                  th.font(T.Theme.TEXT_ROW, True), T.TEXT)
        track = QRectF(x0, bar_top + th.px(70), th.width - 2 * x0, th.px(10))
        rounded(p, track, th.px(5), QColor(255, 255, 255, 80))
        rounded(p, QRectF(track.x(), track.y(), track.width() * self.playback.fraction,
                          track.height()), th.px(5), T.ACCENT)
        draw_text(p, QRectF(x0, bar_top + th.px(92), th.px(400), th.px(36)),
                  f"{fmt_duration(self.playback.position)} / {fmt_duration(self.playback.duration)}",
                  th.font(T.Theme.TEXT_SMALL), T.TEXT_DIM)
        draw_text(p, QRectF(th.width - x0 - th.px(700), bar_top + th.px(92), th.px(700), th.px(36)),
                  f"clock \u00d7{self.playback.speed:.0f}  \u00b7  \u25c0 \u25b6 seek  \u00b7  Back stops",
                  th.font(T.Theme.TEXT_SMALL), T.TEXT_DIM, Qt.AlignRight | Qt.AlignVCenter)


class ListScreen(Screen):
    """A vertical menu (settings, profiles): one column of focusable lines."""

    title = ""

    def __init__(self, app: TvView):
        super().__init__(app)
        self.grid = FocusGrid([])

    def lines(self) -> list[tuple[str, str]]:
        """(label, value) per line."""
        return []

    def activate(self, index: int) -> None:  # pragma: no cover
        pass

    def _sync(self) -> None:
        n = len(self.lines())
        self.grid.set_rows([1] * n)

    def press(self, button: str) -> None:
        if button in ("up", "down"):
            self.grid.move(button)
        elif button == "ok" and self.grid.position is not None:
            self.activate(self.grid.row)
        elif button == "back":
            self.app.pop()

    def paint(self, p: QPainter, th: T.Theme) -> None:
        x0, y0 = th.safe_x, th.safe_y
        draw_text(p, QRectF(x0, y0, th.width, th.px(80)), self.title, th.font(T.Theme.TEXT_TITLE, True), T.TEXT)
        w = th.px(1000)
        for i, (label, value) in enumerate(self.lines()):
            rect = QRectF(x0, y0 + th.px(130) + i * th.px(92), w, th.px(76))
            focused = self.grid.position == (i, 0)
            if focused:
                rect = rect.adjusted(-th.px(6), -th.px(4), th.px(6), th.px(4))
            rounded(p, rect, th.px(12), T.SURFACE_FOCUS if focused else T.SURFACE,
                    QPen(T.FOCUS_OUTLINE, th.px(4)) if focused else None)
            inner = rect.adjusted(th.px(28), 0, -th.px(28), 0)
            draw_text(p, inner, label, th.font(T.Theme.TEXT_BODY, focused), T.TEXT)
            draw_text(p, inner, value, th.font(T.Theme.TEXT_BODY), T.ACCENT,
                      Qt.AlignRight | Qt.AlignVCenter)
        draw_text(p, QRectF(x0, th.height - th.safe_y - th.px(40), th.width, th.px(40)),
                  "OK changes  \u00b7  Back returns", th.font(T.Theme.TEXT_SMALL), T.TEXT_DIM)


class SettingsScreen(ListScreen):
    name = "settings"
    title = "Settings"

    def __init__(self, app: TvView):
        super().__init__(app)
        self.paused: bool | None = None
        self._sync()
        app.call("profiles", on_result=self._set_profiles)

    def _set_profiles(self, profiles) -> None:
        for pid, _, paused, *_ in profiles:
            if pid == self.app.profile:
                self.paused = paused
        self.app.update()

    def lines(self) -> list[tuple[str, str]]:
        paused = "\u2026" if self.paused is None else ("On" if self.paused else "Off")
        return [
            ("Hardware profile (budgets)", self.app.hardware),
            ("Pause watch history", paused),
            ("Clear watch history", ""),
            ("Budget overlay", "On" if self.app.overlay_on else "Off"),
        ]

    def activate(self, index: int) -> None:
        app = self.app
        if index == 0:
            i = HARDWARE_PROFILES.index(app.hardware)
            app.set_hardware(HARDWARE_PROFILES[(i + 1) % len(HARDWARE_PROFILES)])
        elif index == 1 and self.paused is not None:
            app.call("set_paused", app.profile, not self.paused,
                            on_result=self._set_paused, on_error=lambda e: app.toast(str(e)))
        elif index == 2:
            def clear():
                app.call("clear", app.profile,
                         on_result=lambda n: app.toast(f"Cleared {n} events of {app.profile_name}"),
                         on_error=lambda e: app.toast(str(e)))
            app.push(ConfirmScreen(app, f"Clear all of {app.profile_name}'s watch history?",
                                   "What they watched, their list and card choices are "
                                   "forgotten on this box. This cannot be undone.",
                                   "Clear history", clear))
        elif index == 3:
            app.overlay_on = not app.overlay_on
        app.update()

    def _set_paused(self, paused: bool) -> None:
        self.paused = paused
        self.app.toast("Watch history paused: nothing you watch is recorded" if paused
                       else "Watch history is recorded again")


class ProfilesScreen(ListScreen):
    name = "profiles"
    title = "Who's watching?"

    def __init__(self, app: TvView):
        super().__init__(app)
        self.profiles: list[tuple[str, str, bool]] = []
        self._sync()
        app.call("profiles", on_result=self._set_profiles)

    def _set_profiles(self, profiles) -> None:
        self.profiles = [tuple(p) + (None,) * (4 - len(p)) for p in profiles]
        self._sync()
        for i, (pid, *_rest) in enumerate(self.profiles):
            if pid == self.app.profile:
                self.grid.focus(i, 0)
        self.app.update()

    def lines(self) -> list[tuple[str, str]]:
        def note(pid, paused, kids):
            parts = ["current" if pid == self.app.profile else None,
                     None if kids is None else f"kids, up to {kids}",
                     "history paused" if paused else None]
            return " \u00b7 ".join(x for x in parts if x)
        out = [(name or pid, note(pid, paused, kids)) for pid, name, paused, kids in self.profiles]
        return out + [("+ Add a profile", "")]

    def activate(self, index: int) -> None:
        if index < len(self.profiles):
            pid, name, _, kids = self.profiles[index]
            switch = lambda: self.app.switch_profile(pid, name or pid, kids)  # noqa: E731
            if self.app.kids_max is not None and pid != self.app.profile:
                # Leaving a kids profile needs the PIN (entering one does not).
                self.app.push(PinScreen(self.app, switch))
            else:
                switch()
            return
        if self.app.kids_max is not None:
            self.app.push(PinScreen(self.app, lambda: self._add()))
            return
        self._add()

    def _add(self) -> None:
        taken = {pid for pid, *_ in self.profiles}
        n = len(self.profiles) + 1
        while f"viewer{n}" in taken:
            n += 1
        self.app.call("add_profile", f"viewer{n}", f"Viewer {n}",
                             on_result=self._set_profiles, on_error=lambda e: self.app.toast(str(e)))


class OverlayListScreen(ListScreen):
    """A menu panel over the screen below it (dimmed), not a page of its own."""

    heading = ""

    def paint(self, p: QPainter, th: T.Theme) -> None:
        below = self.app.stack[-2] if len(self.app.stack) > 1 else None
        if below is not None:
            below.paint(p, th)
        p.fillRect(QRectF(0, 0, th.width, th.height), QColor(0, 0, 0, 170))
        w = th.px(760)
        lines = self.lines()
        lh = th.px(84)
        panel = QRectF(th.width - th.safe_x - w, th.safe_y, w, th.px(150) + lh * len(lines))
        rounded(p, panel, th.px(16), T.SURFACE, QPen(QColor(255, 255, 255, 50), th.px(2)))
        x = panel.x() + th.px(32)
        inner_w = w - th.px(64)
        draw_text(p, QRectF(x, panel.y() + th.px(24), inner_w, th.px(48)), self.heading,
                  th.font(T.Theme.TEXT_ROW, True), T.TEXT)
        draw_text(p, QRectF(x, panel.y() + th.px(72), inner_w, th.px(36)), self.title,
                  th.font(T.Theme.TEXT_SMALL), T.TEXT_DIM)
        for i, (label, _) in enumerate(lines):
            rect = QRectF(x, panel.y() + th.px(128) + i * lh, inner_w, th.px(72))
            focused = self.grid.position == (i, 0)
            rounded(p, rect, th.px(12), T.TEXT if focused else T.SURFACE_FOCUS)
            draw_text(p, rect.adjusted(th.px(24), 0, -th.px(24), 0), label,
                      th.font(T.Theme.TEXT_BODY, True), T.BACKGROUND if focused else T.TEXT)


class CardMenuScreen(OverlayListScreen):
    """A card's menu (Menu key or a long OK): the Watch Next actions of the engine."""

    name = "card_menu"

    def __init__(self, app: TvView, card: Card, row_kind: str):
        super().__init__(app)
        self.card = card
        self.row_kind = row_kind
        self.heading = card.title
        self.title = "Options"
        self.on_list: bool | None = None
        self.actions: list[tuple[str, str]] = self._actions()
        self._sync()
        app.call("card_state", app.profile, card.item_id, on_result=self._set_state)

    def _set_state(self, state: dict) -> None:
        self.on_list = bool(state.get("on_list"))
        self.actions = self._actions()
        self._sync()
        self.app.update()

    def _actions(self) -> list[tuple[str, str]]:
        out = [("play", "\u25b6 Play"), ("details", "Details")]
        if self.row_kind == "continue":
            out.append(("remove_from_continue", "Remove from Continue watching"))
        if self.on_list is not None:
            out.append(("remove_from_list", "Remove from My list") if self.on_list
                       else ("add_to_list", "Add to My list"))
        out += [("mark_watched", "Mark as watched"), ("not_interested", "Not interested")]
        return out

    def lines(self) -> list[tuple[str, str]]:
        return [(label, "") for _, label in self.actions]

    DONE = {"remove_from_continue": "Removed from Continue watching",
            "not_interested": "Got it: you will not see it again",
            "add_to_list": "Added to My list", "remove_from_list": "Removed from My list",
            "mark_watched": "Marked as watched"}

    def activate(self, index: int) -> None:
        action = self.actions[index][0]
        app, card = self.app, self.card
        app.pop()
        if action == "play":
            app.play(card)
        elif action == "details":
            app.push(DetailsScreen(app, card))
        else:
            app.call("card_action", app.profile, card.item_id, action,
                     on_result=lambda _r: self._done(action),
                     on_error=lambda e: app.toast(str(e)))

    def _done(self, action: str) -> None:
        self.app.toast(self.DONE[action])
        home = self.app.home_screen
        if home is not None:
            home.refresh()


class ConfirmScreen(OverlayListScreen):
    """Are you sure? Cancel is focused first: a stray OK never destroys anything."""

    name = "confirm"

    def __init__(self, app: TvView, heading: str, detail: str, confirm_label: str, on_confirm):
        super().__init__(app)
        self.heading, self.title = heading, detail
        self.confirm_label = confirm_label
        self.on_confirm = on_confirm
        self._sync()

    def lines(self) -> list[tuple[str, str]]:
        return [("Cancel", ""), (self.confirm_label, "")]

    def activate(self, index: int) -> None:
        self.app.pop()
        if index == 1:
            self.on_confirm()


#: The simulator's parental PIN (a box keeps its own in its settings).
DEFAULT_PIN = "1234"


class PinScreen(Screen):
    """Four digits to leave a kids profile: typed with the digit keys, or set with up/down and
    moved along with left/right; OK checks it."""

    name = "pin"

    def __init__(self, app: TvView, on_success):
        super().__init__(app)
        self.on_success = on_success
        self.digits = [0, 0, 0, 0]
        self.typed: list[str] = []
        self.col = 0
        self.wrong = False

    def press(self, button: str) -> None:
        if button in DIGITS:
            self.typed.append(button)
            self.digits[len(self.typed) - 1] = int(button)
            self.col = min(len(self.typed), 3)
            if len(self.typed) == 4:
                self._check("".join(self.typed))
        elif button == "up" or button == "down":
            self.digits[self.col] = (self.digits[self.col] + (1 if button == "up" else -1)) % 10
            self.typed = []
        elif button in ("left", "right"):
            self.col = min(3, max(0, self.col + (1 if button == "right" else -1)))
        elif button == "ok":
            self._check("".join(str(d) for d in self.digits))
        elif button == "back":
            self.app.pop()

    def _check(self, pin: str) -> None:
        if pin == self.app.pin:
            self.app.pop()
            self.on_success()
        else:
            self.wrong = True
            self.typed, self.digits, self.col = [], [0, 0, 0, 0], 0
            self.app.toast("Wrong PIN")

    def paint(self, p: QPainter, th: T.Theme) -> None:
        p.fillRect(QRectF(0, 0, th.width, th.height), T.BACKGROUND)
        draw_text(p, QRectF(0, th.px(260), th.width, th.px(80)), "Enter the PIN to leave the kids profile",
                  th.font(T.Theme.TEXT_TITLE, True), T.TEXT, Qt.AlignCenter)
        size, gap = th.px(120), th.px(36)
        x0 = (th.width - 4 * size - 3 * gap) / 2
        for i, d in enumerate(self.digits):
            rect = QRectF(x0 + i * (size + gap), th.px(420), size, size * 1.2)
            focused = i == self.col
            rounded(p, rect, th.px(14), T.SURFACE_FOCUS if focused else T.SURFACE,
                    QPen(T.FOCUS_OUTLINE, th.px(5)) if focused else None)
            shown = "\u2022" if (i < len(self.typed)) else str(d)
            draw_text(p, rect, shown, th.font(64, True), T.TEXT, Qt.AlignCenter)
        hint = "Wrong PIN, try again" if self.wrong else \
            "Digits, or \u25b2\u25bc to set and \u25c0\u25b6 to move; OK checks; Back cancels"
        draw_text(p, QRectF(0, th.px(640), th.width, th.px(50)), hint, th.font(T.Theme.TEXT_BODY),
                  T.OVER_RED if self.wrong else T.TEXT_DIM, Qt.AlignCenter)
