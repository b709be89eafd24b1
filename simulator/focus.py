"""Where the focus is on a screen of rows, and where the D-pad moves it.

Plain Python, no Qt: the rules are the part of a 10-foot UI that people notice when they are
wrong, so they live where tests can pin them down exactly.

Rules (after Android TV's Leanback rows):

- Left/right move along a row and **stop at its edges** (no wrap-around: a wrapping row makes
  the viewer lose their place).
- Up/down move between rows and **keep the column** the viewer was in: each row remembers the
  last column focused in it, and a row entered for the first time is entered at the column the
  viewer came from, clamped to the row's length.
- Focus is **never lost**: empty rows are skipped, and when the rows change (a new home screen
  arrives) the focus follows the same item if it is still on screen, else stays at the same
  place clamped to what is there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable, Sequence

LEFT, RIGHT, UP, DOWN = "left", "right", "up", "down"


@dataclass
class FocusGrid:
    """Focus over rows of different lengths.

    Parameters
    ----------
    lengths : sequence of int
        Number of focusable cells in each row (0 for a row that holds nothing focusable).
    keys : sequence of sequence of hashable, optional
        An identity per cell (item ids); lets :meth:`set_rows` keep the focus on the same item.
    """

    lengths: list[int] = field(default_factory=list)
    keys: list[list[Hashable]] | None = None
    row: int = 0
    col: int = 0
    _memory: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.lengths = [int(n) for n in self.lengths]
        self.row, self.col = self._first_cell()

    # ------------------------------------------------------------------ state

    @property
    def empty(self) -> bool:
        return not any(n > 0 for n in self.lengths)

    @property
    def position(self) -> tuple[int, int] | None:
        """(row, column) in focus, None when there is nothing focusable."""
        return None if self.empty else (self.row, self.col)

    @property
    def key(self) -> Hashable | None:
        """Identity of the focused cell (None without keys or cells)."""
        if self.empty or self.keys is None:
            return None
        return self.keys[self.row][self.col]

    def _first_cell(self) -> tuple[int, int]:
        for r, n in enumerate(self.lengths):
            if n > 0:
                return r, 0
        return 0, 0

    # ------------------------------------------------------------------ moves

    def move(self, direction: str) -> bool:
        """Move the focus one step; returns whether it moved (False at an edge)."""
        if self.empty:
            return False
        if direction in (LEFT, RIGHT):
            step = -1 if direction == LEFT else 1
            col = self.col + step
            if 0 <= col < self.lengths[self.row]:
                self.col = col
                self._memory[self.row] = col
                return True
            return False
        if direction in (UP, DOWN):
            step = -1 if direction == UP else 1
            r = self.row + step
            while 0 <= r < len(self.lengths) and self.lengths[r] == 0:
                r += step
            if not 0 <= r < len(self.lengths):
                return False
            self._memory[self.row] = self.col
            self.col = min(self._memory.get(r, self.col), self.lengths[r] - 1)
            self.row = r
            return True
        raise ValueError(f"unknown direction {direction!r}; expected left, right, up or down")

    def focus(self, row: int, col: int) -> None:
        """Put the focus on a cell (clamped to what exists)."""
        if self.empty:
            return
        row = max(0, min(row, len(self.lengths) - 1))
        if self.lengths[row] == 0:  # land on the nearest focusable row
            candidates = [r for r, n in enumerate(self.lengths) if n > 0]
            row = min(candidates, key=lambda r: (abs(r - row), r))
        self.row = row
        self.col = max(0, min(col, self.lengths[row] - 1))
        self._memory[row] = self.col

    def set_rows(self, lengths: Sequence[int], keys: Sequence[Sequence[Hashable]] | None = None) -> None:
        """Replace the rows, keeping the focus on the same item if it is still there."""
        old_key, old = self.key, (self.row, self.col)
        self.lengths = [int(n) for n in lengths]
        self.keys = None if keys is None else [list(k) for k in keys]
        self._memory = {r: c for r, c in self._memory.items()
                        if r < len(self.lengths) and c < self.lengths[r]}
        if self.empty:
            self.row, self.col = 0, 0
            return
        if old_key is not None and self.keys is not None:
            for r, row_keys in enumerate(self.keys):
                if old_key in row_keys:
                    self.focus(r, row_keys.index(old_key))
                    return
        self.focus(*old)
