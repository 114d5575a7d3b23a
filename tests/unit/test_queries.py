"""The named statements: how they compile, and that every one is used (and none is dead).

tests/integration/test_statements.py prepares each against the migrated schema.
"""

import re
from pathlib import Path

import pytest

from jobline.pg import queries

ROOT = Path(__file__).resolve().parents[2]
# Each statement file and the source folder whose code runs its statements.
FILES = {
    # The shared statements run from the library and from every service.
    ("jobline.pg", "queries.sql"): [ROOT / "libs/common/src", *ROOT.glob("services/*/src")],
    ("jobline_gateway", "queries.sql"): [ROOT / "services/gateway/src"],
    ("jobline_gateway.console", "console.sql"): [ROOT / "services/gateway/src"],
    ("jobline_relay", "queries.sql"): [ROOT / "services/outbox-relay/src"],
    # Webhooks: the gateway's routes and the relay's fan-out and delivery loop.
    ("jobline.pg", "webhooks.sql"): [ROOT / "libs/common/src", *ROOT.glob("services/*/src")],
    # Workflows: the library's fan-in and the gateway's routes.
    ("jobline.pg", "workflows.sql"): [ROOT / "libs/common/src", *ROOT.glob("services/*/src")],
    ("jobline.pg", "gates.sql"): [ROOT / "libs/common/src", *ROOT.glob("services/*/src")],
}


def test_named_blocks_are_split_and_compiled_to_positional_parameters():
    parsed = queries.parse(
        "-- name: a\n-- why\nSELECT 1\n\n-- name: b\nSELECT :x, :y::int, CAST(:x AS text)\n"
    )
    assert parsed["a"].sql == "-- why\nSELECT 1"
    assert parsed["a"].params == ()
    assert parsed["b"].sql == "SELECT $1, $2::int, CAST($1 AS text)"
    assert parsed["b"].params == ("x", "y")


def test_binding_takes_exactly_the_statements_parameters():
    query = queries.compile_block("q", "SELECT :a, :b")
    assert query.bind({"b": 2, "a": 1}) == [1, 2]
    with pytest.raises(TypeError, match="needs b"):
        query.bind({"a": 1})
    with pytest.raises(TypeError, match="takes no c"):
        query.bind({"a": 1, "b": 2, "c": 3})


def test_an_unknown_name_fails_loudly():
    with pytest.raises(queries.UnknownQuery, match="nope"):
        _ = queries.SQL["nope"]


@pytest.mark.parametrize(("package", "filename"), list(FILES))
def test_every_named_statement_is_used_by_its_package(package, filename):
    statements = queries.Queries.load(package, filename)
    assert statements.names()
    source = "\n".join(
        path.read_text() for folder in FILES[package, filename] for path in folder.rglob("*.py")
    )
    unused = [name for name in statements.names() if not re.search(rf"[\"']{name}[\"']", source)]
    assert unused == [], f"dead statements in {package}/{filename}: {unused}"


def test_a_name_given_to_two_blocks_is_refused():
    with pytest.raises(ValueError, match="named more than once: a"):
        queries.parse("-- name: a\nSELECT 1\n\n-- name: b\nSELECT 2\n\n-- name: a\nSELECT 3\n")
