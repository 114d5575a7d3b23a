import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobline.core import apikeys
from jobline.core.apikeys import InvalidScope, MalformedKey, Scope
from jobline.core.errors import JoblineError


def test_generated_keys_verify_and_carry_their_prefix():
    key = apikeys.generate()
    assert apikeys.prefix_of(key.plaintext) == key.prefix
    assert apikeys.verify(key.plaintext, key.key_hash)
    assert key.plaintext not in key.key_hash
    other = apikeys.generate()
    assert not apikeys.verify(other.plaintext, key.key_hash)
    assert key.prefix != other.prefix


def test_secret_has_at_least_128_bits():
    assert apikeys.SECRET_BYTES * 8 >= 128


@given(st.text(max_size=80))
def test_arbitrary_text_is_never_a_key_unless_well_formed(text):
    try:
        prefix = apikeys.prefix_of(text)
    except MalformedKey:
        return
    assert text.startswith(f"jl_{prefix}_")


def test_scopes_parse_and_reject_unknown_names():
    assert apikeys.parse_scopes("jobs:write, jobs:read") == {Scope.JOBS_WRITE, Scope.JOBS_READ}
    with pytest.raises(InvalidScope, match="unknown scope 'jobs:delete'"):
        apikeys.parse_scopes("jobs:delete")
    with pytest.raises(InvalidScope, match="at least one"):
        apikeys.parse_scopes(" , ")


@pytest.mark.parametrize("tenant", ["", "UPPER", "a b", "-leading", "x" * 64])
def test_bad_tenant_names(tenant):
    with pytest.raises(JoblineError, match="invalid tenant"):
        apikeys.validate_tenant(tenant)
