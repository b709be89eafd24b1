"""D-pad focus rules of the simulator (plain Python, no Qt)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from simulator.focus import FocusGrid


def test_left_right_move_along_a_row_and_stop_at_its_edges():
    g = FocusGrid([3])
    assert g.position == (0, 0)
    assert g.move("left") is False and g.position == (0, 0)
    assert g.move("right") and g.move("right")
    assert g.position == (0, 2)
    assert g.move("right") is False and g.position == (0, 2)


def test_up_down_keep_the_column_and_clamp_to_a_shorter_row():
    g = FocusGrid([6, 6, 2])
    for _ in range(4):
        g.move("right")
    g.move("down")
    assert g.position == (1, 4)          # same column in a row of the same length
    g.move("down")
    assert g.position == (2, 1)          # clamped to the short row's last card
    g.move("up")
    assert g.position == (1, 4)          # back where the viewer left that row
    g.move("up")
    g.move("up")
    assert g.position == (0, 4)          # top edge stops
    assert g.move("up") is False


def test_a_row_remembers_its_own_column():
    g = FocusGrid([5, 5])
    g.move("down")
    g.move("right")
    g.move("right")
    g.move("up")                         # row 0 entered at column 2
    g.move("left")
    g.move("left")                       # row 0 now at column 0
    g.move("down")
    assert g.position == (1, 2)          # row 1 remembered column 2


def test_empty_rows_are_skipped():
    g = FocusGrid([0, 3, 0, 0, 2])
    assert g.position == (1, 0)
    g.move("down")
    assert g.position == (4, 0)
    assert g.move("down") is False
    g.move("up")
    assert g.position == (1, 0)


def test_new_rows_keep_the_focus_on_the_same_item():
    g = FocusGrid([3, 3], keys=[["a", "b", "c"], ["d", "e", "f"]])
    g.move("down")
    g.move("right")
    assert g.key == "e"
    g.set_rows([2, 4], [["x", "e"], ["d", "y", "z", "w"]])
    assert g.position == (0, 1) and g.key == "e"
    g.set_rows([1], [["q"]])             # the item is gone: same place, clamped
    assert g.position == (0, 0) and g.key == "q"
    g.set_rows([], [])
    assert g.position is None and g.move("down") is False


@given(
    lengths=st.lists(st.integers(0, 8), min_size=0, max_size=7),
    moves=st.lists(st.sampled_from(["up", "down", "left", "right"]), max_size=60),
    new_lengths=st.lists(st.integers(0, 8), max_size=7),
)
def test_focus_is_never_lost(lengths, moves, new_lengths):
    g = FocusGrid(lengths)
    for i, m in enumerate(moves):
        before = g.position
        moved = g.move(m)
        if g.empty:
            assert g.position is None
            continue
        r, c = g.position
        assert 0 <= r < len(g.lengths) and 0 <= c < g.lengths[r]
        if not moved:
            assert g.position == before
        if m in ("left", "right"):
            assert r == before[0]
        if i == len(moves) // 2:
            g.set_rows(new_lengths)
    if not g.empty:
        r, c = g.position
        assert 0 <= c < g.lengths[r]
