"""Capping error text: within the limit, the cut marked, never a split character."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobline.core.textcap import cap_text


def test_text_within_the_limit_is_kept_whole():
    assert cap_text("boom", 64) == "boom"
    assert cap_text("x" * 100, 100) == "x" * 100


def test_a_long_text_is_cut_to_the_limit_and_says_so():
    capped = cap_text("x" * 2_000_000, 4096)
    assert len(capped.encode()) <= 4096
    assert capped.startswith("x" * 3000)
    head, marker = capped.split(" [... cut: ")
    assert set(head) == {"x"}
    assert marker == f"2000000 bytes, first {len(head)} kept]"


@given(st.text(min_size=0, max_size=3000), st.integers(min_value=64, max_value=2000))
def test_the_cap_holds_for_any_text(text, limit):
    capped = cap_text(text, limit)
    assert len(capped.encode("utf-8", errors="replace")) <= limit
    if len(text.encode("utf-8", errors="replace")) <= limit:
        assert capped == text
    else:
        kept = capped.split(" [... cut:")[0]
        assert text.startswith(kept)


def test_a_limit_without_room_for_the_marker_is_refused():
    with pytest.raises(ValueError, match="at least 64"):
        cap_text("x", 10)
