"""Sizes and colours of the 10-foot UI, in one place.

Everything is designed at 1080p and scaled to the chosen resolution, so 720p is the same screen,
smaller. The numbers follow TV-interface conventions (see ``../shared/notes``): a title-safe
area of 5% on every side, nothing smaller than 24 px at 1080p, one unmistakable focus (the
focused card grows by 10% and gets a thick light outline), dark backgrounds (TVs bloom on
white).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from PySide6.QtGui import QColor, QFont

RESOLUTIONS = {"720p": (1280, 720), "1080p": (1920, 1080)}

BACKGROUND = QColor("#101318")
SURFACE = QColor("#1c2129")
SURFACE_FOCUS = QColor("#2c3440")
TEXT = QColor("#f2f4f7")
TEXT_DIM = QColor("#a7b0bd")
ACCENT = QColor("#4da3ff")
FOCUS_OUTLINE = QColor("#ffffff")
OK_GREEN = QColor("#3ecf6e")
OVER_RED = QColor("#ff5a52")

#: Poster colours by primary genre; other genres get a colour from their name's hash.
GENRE_COLOURS = {
    "cartoons": "#d0663c", "cooking": "#c98a2b", "drama": "#8e4b5a", "music": "#7a4fa3",
    "nature": "#4e8a3a", "news": "#35618f", "scifi": "#3a5ba8", "sports": "#2f8f4e",
    "comedy": "#b5883a", "documentary": "#3f7d6e", "crime": "#5b5f6e", "kids": "#d4a03a",
}


def genre_colour(genre: str) -> QColor:
    if genre in GENRE_COLOURS:
        return QColor(GENRE_COLOURS[genre])
    h = int(hashlib.sha1(genre.encode()).hexdigest()[:6], 16)
    return QColor.fromHsv(h % 360, 120, 150)


@dataclass(frozen=True)
class Theme:
    """Pixel sizes for one resolution (1080p numbers times ``scale``)."""

    width: int
    height: int

    @classmethod
    def for_resolution(cls, name: str) -> Theme:
        try:
            return cls(*RESOLUTIONS[name])
        except KeyError:
            raise ValueError(f"unknown resolution {name!r}; known: {', '.join(RESOLUTIONS)}") from None

    @property
    def scale(self) -> float:
        return self.height / 1080.0

    def px(self, v: float) -> int:
        return max(1, int(round(v * self.scale)))

    # Title-safe area: 5% of each dimension.
    @property
    def safe_x(self) -> int:
        return int(round(self.width * 0.05))

    @property
    def safe_y(self) -> int:
        return int(round(self.height * 0.05))

    # Cards are 16:9 posters.
    @property
    def card_w(self) -> int:
        return self.px(352)

    @property
    def card_h(self) -> int:
        return self.px(198)

    @property
    def card_gap(self) -> int:
        return self.px(32)

    @property
    def row_h(self) -> int:
        """Row title + poster + up to two lines of title and two of reason + breathing room."""
        return self.px(56) + self.card_h + self.px(134) + self.px(20)

    @property
    def header_h(self) -> int:
        return self.px(96)

    def font(self, size_1080: float, bold: bool = False) -> QFont:
        f = QFont("DejaVu Sans")
        f.setPixelSize(self.px(size_1080))
        f.setBold(bold)
        return f

    # The sizes in use (1080p pixels). The smallest is 24: readable from a sofa.
    TEXT_SMALL = 24
    TEXT_BODY = 28
    TEXT_ROW = 34
    TEXT_TITLE = 56
