"""Poster art for programmes that have none: drawn from the item id and its genre.

The demo catalog has titles and genres but no artwork, and a box shows *something* on every
card. Each poster is a gradient in the genre's colour with a few soft shapes placed by a hash of
the item id -- the same programme always gets the same poster, neighbours in a row look
different, and a genre is recognisable at a glance from the sofa.
"""

from __future__ import annotations

import hashlib

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QImage, QLinearGradient, QPainter, QPixmap, QRadialGradient

from simulator.theme import genre_colour

from device.engine import show_title as _SHOW  # noqa: E402 (the one episode-marker rule)

_CACHE: dict[tuple[str, int, int], QPixmap] = {}
_CACHE_LIMIT = 512


def _rng(item_id: str):
    digest = hashlib.sha256(item_id.encode()).digest()
    return iter(digest)


def poster(item_id: str, genres: tuple[str, ...], width: int, height: int,
           title: str | None = None) -> QPixmap:
    """The poster of an item at a size (cached); ``title`` is lettered on it (without an
    episode number: the series name is what a poster shows)."""
    key = (item_id, width, height, bool(title))
    pix = _CACHE.get(key)
    if pix is not None:
        return pix
    if len(_CACHE) >= _CACHE_LIMIT:
        _CACHE.clear()
    img = QImage(width, height, QImage.Format_ARGB32_Premultiplied)
    img.fill(Qt.transparent)
    p = QPainter(img)
    p.setRenderHint(QPainter.Antialiasing)
    base = genre_colour(genres[0] if genres else "")
    # Each series gets its own shade of the genre's colour (hash of its name).
    series = _SHOW(title) if title else item_id
    shade = int(hashlib.sha1(series.encode()).hexdigest()[:4], 16)
    h, s_, v, _ = base.getHsv()
    base = QColor.fromHsv((h + shade % 50 - 25) % 360, min(255, max(60, s_ + shade % 60 - 30)),
                          min(255, max(70, v + (shade >> 8) % 50 - 25)))
    grad = QLinearGradient(0, 0, width, height)
    grad.setColorAt(0.0, base.lighter(135))
    grad.setColorAt(1.0, base.darker(220))
    p.fillRect(QRectF(0, 0, width, height), grad)
    rnd = _rng(item_id)
    for _ in range(4):
        cx = next(rnd) / 255 * width
        cy = next(rnd) / 255 * height
        r = (0.15 + next(rnd) / 255 * 0.45) * height
        c = QColor(base).lighter(150 + next(rnd) % 80)
        c.setAlpha(90)
        rg = QRadialGradient(QPointF(cx, cy), r)
        rg.setColorAt(0.0, c)
        c2 = QColor(c)
        c2.setAlpha(0)
        rg.setColorAt(1.0, c2)
        p.setBrush(rg)
        p.setPen(Qt.NoPen)
        p.drawEllipse(QPointF(cx, cy), r, r)
    # A dark foot so text laid over the poster (badges) stays readable.
    foot = QLinearGradient(0, height * 0.55, 0, height)
    foot.setColorAt(0.0, QColor(0, 0, 0, 0))
    foot.setColorAt(1.0, QColor(0, 0, 0, 150))
    p.fillRect(QRectF(0, height * 0.55, width, height * 0.45), foot)
    if title:
        font = QFont("DejaVu Serif" if shade % 2 else "DejaVu Sans")
        font.setBold(True)
        font.setPixelSize(max(8, int(height * 0.15)))
        p.setFont(font)
        p.setPen(QColor(255, 255, 255, 235))
        margin = width * 0.07
        # At most two lines, ellipsised at the end and bottom-anchored below the genre tag: a
        # real catalog's 60-character title must not climb over the top of the poster.
        fm = QFontMetrics(font)
        box_w = width - 2 * margin
        words, lines = series.split(), []
        while words and len(lines) < 2:
            line = words.pop(0)
            while words and fm.horizontalAdvance(f"{line} {words[0]}") <= box_w:
                line = f"{line} {words.pop(0)}"
            lines.append(line)
        if words:
            lines[-1] = f"{lines[-1]} {' '.join(words)}"
        lines = [fm.elidedText(line, Qt.ElideRight, int(box_w)) for line in lines]
        lh = fm.lineSpacing()
        bottom = height * 0.82
        for n, line in enumerate(lines):
            p.drawText(QRectF(margin, bottom - (len(lines) - n) * lh, box_w, lh),
                       Qt.AlignLeft | Qt.AlignVCenter, line)
    p.end()
    pix = QPixmap.fromImage(img)
    _CACHE[key] = pix
    return pix
