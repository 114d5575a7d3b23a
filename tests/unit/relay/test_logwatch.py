"""A partition's log going back is noticed from acknowledgements alone."""

from __future__ import annotations

from jobline_relay.logwatch import LogWatch


def test_growing_offsets_are_quiet():
    watch = LogWatch()
    assert watch.acknowledged([("t", 0, 0), ("t", 1, 0), ("t", 0, 1)]) == {}
    assert watch.acknowledged([("t", 0, 2), ("u", 0, 7)]) == {}


def test_an_offset_at_or_below_the_last_one_is_a_lost_log():
    watch = LogWatch()
    watch.acknowledged([("t", 0, 25), ("t", 1, 3), ("u", 0, 9)])
    assert watch.acknowledged([("t", 0, 0), ("t", 1, 3), ("u", 0, 10)]) == {"t": [0, 1]}


def test_each_partition_is_named_once_and_the_new_log_is_followed():
    watch = LogWatch()
    watch.acknowledged([("t", 0, 5)])
    assert watch.acknowledged([("t", 0, 0), ("t", 0, 1)]) == {"t": [0]}
    assert watch.acknowledged([("t", 0, 2)]) == {}
