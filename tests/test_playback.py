"""The player's accelerated clock and the watch events it writes (plain Python)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.playback import Playback


def test_playing_to_the_end_writes_play_progress_marks_and_one_finish():
    pb = Playback(duration=600.0, play_through_s=10.0)   # 60 programme-seconds per wall second
    assert pb.speed == pytest.approx(60.0)
    events = pb.start()
    for _ in range(10):
        events += pb.advance(1.0)
    assert [k for k, _ in events] == ["play"] + ["progress"] * 9 + ["finish"]
    assert [p for _, p in events][1:4] == pytest.approx([60.0, 120.0, 180.0])
    assert events[-1] == ("finish", 600.0)
    assert pb.finished and not pb.playing
    assert pb.advance(1.0) == [] and pb.stop() == []    # nothing after the end


def test_stop_writes_the_position_and_resume_starts_there():
    pb = Playback(duration=1000.0, position=250.0, play_through_s=10.0)
    assert pb.start() == [("play", 250.0)]
    pb.advance(0.5)                                       # +50 s
    assert pb.stop() == [("stop", pytest.approx(300.0))]
    assert pb.advance(1.0) == []


def test_pause_stops_the_clock_and_seek_moves_by_tenths():
    pb = Playback(duration=100.0, play_through_s=100.0)
    pb.toggle()
    assert pb.advance(5.0) == [] and pb.position == 0.0
    assert pb.seek(3) == [("progress", pytest.approx(30.0))]
    assert pb.seek(-5) == [("progress", 0.0)]
    assert pb.seek(20) == [("finish", 100.0)]


def test_a_short_recording_plays_in_real_time():
    assert Playback(duration=8.0, play_through_s=30.0).speed == 1.0


@given(
    duration=st.floats(1.0, 10_000.0),
    steps=st.lists(st.one_of(st.floats(0.0, 3.0), st.integers(-3, 3)), max_size=40),
)
def test_position_stays_in_range_and_finish_is_written_at_most_once(duration, steps):
    pb = Playback(duration=duration, play_through_s=5.0)
    events = pb.start()
    for s in steps:
        events += pb.seek(s) if isinstance(s, int) else pb.advance(s)
        assert 0.0 <= pb.position <= pb.duration
    kinds = [k for k, _ in events]
    assert kinds.count("finish") <= 1
    if "finish" in kinds:
        assert kinds[-1] == "finish"
