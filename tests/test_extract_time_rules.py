"""extract.video's time rules where a stream gives no timestamps (mutation testing found them unpinned):
a frame without pts or time base sits at index / frame rate, 25 fps when the rate is unknown."""
from __future__ import annotations

from fractions import Fraction
from types import SimpleNamespace

import pytest

from avmaster_core.extract.video import _frame_time


def frame(pts, time_base):
    return SimpleNamespace(pts=pts, time_base=time_base)


def test_a_timestamped_frame_uses_its_pts():
    assert _frame_time(frame(3003, Fraction(1, 30000)), index=7, rate=30) == pytest.approx(0.1001)


@pytest.mark.parametrize("pts, time_base", [(None, Fraction(1, 1000)), (500, None), (None, None)])
def test_a_frame_without_full_timestamp_falls_back_to_index_over_rate(pts, time_base):
    assert _frame_time(frame(pts, time_base), index=5, rate=Fraction(10)) == pytest.approx(0.5)
    assert _frame_time(frame(pts, time_base), index=5, rate=None) == pytest.approx(0.2)  # 25 fps by default
