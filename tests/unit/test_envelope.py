from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobline.core.envelope import InvalidEnvelope, WorkEnvelope

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@given(
    payload=st.dictionaries(st.text(), json_values, max_size=5),
    attempt=st.integers(min_value=1, max_value=1000),
)
def test_round_trip(payload, attempt):
    envelope = WorkEnvelope(
        id=uuid4(),
        tenant="acme",
        type="echo",
        queue="default",
        attempt=attempt,
        payload=payload,
        timeout_seconds=30.0,
        max_attempts=5,
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )
    assert WorkEnvelope.decode(envelope.encode()) == envelope


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "no value"),
        (b"\xff\xfe", "not JSON"),
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"id": "x"}', "bad value"),
        (b'{"tenant": "t"}', "lacks field 'id'"),
    ],
)
def test_poison_messages_raise_with_a_reason(raw, reason):
    with pytest.raises(InvalidEnvelope, match=reason):
        WorkEnvelope.decode(raw)


def test_attempt_zero_is_rejected():
    good = WorkEnvelope(uuid4(), "t", "echo", "default", 1, {}, 1.0, 1).to_dict()
    good["attempt"] = 0
    with pytest.raises(InvalidEnvelope, match="attempt"):
        WorkEnvelope.from_dict(good)


def test_payload_must_be_an_object():
    data = WorkEnvelope(uuid4(), "t", "echo", "default", 1, {}, 1.0, 1).to_dict()
    data["payload"] = [1]
    with pytest.raises(InvalidEnvelope, match="payload"):
        WorkEnvelope.from_dict(data)
