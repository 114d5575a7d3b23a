"""The console's workflow graph layout (pure): columns by longest path from the roots, rows
by the parents' mean row, every edge pointing rightwards."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from jobline_gateway.console import graph
from jobline_gateway.console.graph import BOX_HEIGHT, BOX_WIDTH, GAP_X, GAP_Y, PAD


def test_depth_is_the_longest_path_from_a_root():
    nodes = [("a", []), ("b", ["a"]), ("c", ["b"]), ("d", ["a", "c"]), ("e", [])]
    assert graph.depths(nodes) == {"a": 0, "b": 1, "c": 2, "d": 3, "e": 0}


def test_a_fan_out_and_fan_in_is_three_columns_with_the_callback_centred():
    nodes: list[tuple[str, list[str]]] = [("split", [])]
    nodes += [(f"p{i}", ["split"]) for i in range(3)]
    nodes.append(("zip", [f"p{i}" for i in range(3)]))
    drawn = graph.layout(nodes)
    boxes = drawn.boxes
    assert [boxes[r].depth for r in ("split", "p0", "p1", "p2", "zip")] == [0, 1, 1, 1, 2]
    assert [boxes[f"p{i}"].row for i in range(3)] == [0, 1, 2]  # the given order
    step = BOX_HEIGHT + GAP_Y
    assert boxes["p0"].y == PAD
    assert boxes["p2"].y == PAD + 2 * step
    # The single nodes of columns 0 and 2 sit level with the middle parent.
    assert boxes["split"].y == boxes["zip"].y == boxes["p1"].y
    assert boxes["zip"].x == PAD + 2 * (BOX_WIDTH + GAP_X)
    assert drawn.width == 2 * PAD + 3 * BOX_WIDTH + 2 * GAP_X
    assert drawn.height == 2 * PAD + 3 * BOX_HEIGHT + 2 * GAP_Y
    assert len(drawn.edges) == 6
    assert list(boxes) == ["split", "p0", "p1", "p2", "zip"]  # drawing order: by column


def test_rows_follow_the_parents_to_avoid_crossings():
    # b's child is listed first, but a's child goes on top, level with a.
    nodes = [("a", []), ("b", []), ("from-b", ["b"]), ("from-a", ["a"])]
    boxes = graph.layout(nodes).boxes
    assert boxes["from-a"].row == 0
    assert boxes["from-b"].row == 1


def test_an_edge_runs_from_the_parents_right_side_to_the_childs_left_side():
    drawn = graph.layout([("a", []), ("b", ["a"])])
    [edge] = drawn.edges
    a, b = drawn.boxes["a"], drawn.boxes["b"]
    mid_a, mid_b = a.y + BOX_HEIGHT // 2, b.y + BOX_HEIGHT // 2
    assert edge.path.startswith(f"M{a.x + BOX_WIDTH},{mid_a} C")
    assert edge.path.endswith(f" {b.x},{mid_b}")
    assert (edge.parent, edge.child) == ("a", "b")


def test_unknown_parents_are_ignored_and_an_empty_graph_is_empty():
    drawn = graph.layout([("child", ["purged"])])
    assert drawn.boxes["child"].depth == 0
    assert drawn.edges == []
    empty = graph.layout([])
    assert (empty.width, empty.height, dict(empty.boxes)) == (2 * PAD, 2 * PAD, {})


@st.composite
def dags(draw: st.DrawFn) -> list[tuple[str, list[str]]]:
    size = draw(st.integers(1, 25))
    nodes: list[tuple[str, list[str]]] = []
    for i in range(size):
        parents = draw(st.lists(st.integers(0, i - 1), max_size=3, unique=True)) if i else []
        nodes.append((f"n{i}", [f"n{p}" for p in parents]))
    order = draw(st.permutations(range(size)))
    return [nodes[i] for i in order]  # any listing order, not only parents first


@given(dags())
def test_every_edge_points_rightwards_and_no_two_boxes_overlap(nodes):
    drawn = graph.layout(nodes)
    boxes = drawn.boxes
    assert set(boxes) == {ref for ref, _ in nodes}
    for ref, parents in nodes:
        for p in parents:
            assert boxes[p].depth < boxes[ref].depth
        if parents:
            assert boxes[ref].depth == 1 + max(boxes[p].depth for p in parents)
        else:
            assert boxes[ref].depth == 0
    places = {(b.x, b.y) for b in boxes.values()}
    assert len(places) == len(boxes)
    for b in boxes.values():
        assert b.x >= 0
        assert b.x + BOX_WIDTH <= drawn.width
        assert b.y >= 0
        assert b.y + BOX_HEIGHT <= drawn.height
    assert len(drawn.edges) == sum(len(p) for _, p in nodes)
