"""Webhooks' pure rules: Standard Webhooks signing (both ways with the reference library),
the address policy, event-type matching, retry and disabling, and the API's agreement with
them."""

from __future__ import annotations

import base64
import ipaddress
import random
import re
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

import pytest
import standardwebhooks
from pydantic import ValidationError

from jobline.api import webhooks as api
from jobline.core import cloudevent
from jobline.core.webhooks import addresses, matching, retry, signing
from jobline.core.webhooks.addresses import AddressPolicy

BODY = b'{"specversion":"1.0","id":"j:1","type":"jobline.job.succeeded","data":{"x":1}}'
NOW = 1_800_000_000


# --- signing ---------------------------------------------------------------------------------


def test_a_secret_is_whsec_and_32_random_bytes():
    secret = signing.generate_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert signing.generate_secret() != secret


def test_our_signature_verifies_with_the_standard_webhooks_library():
    secret = signing.generate_secret()
    now = int(datetime.now(UTC).timestamp())
    headers = signing.headers([secret], "msg_1", now, BODY)
    assert headers["webhook-signature"].startswith("v1,")
    assert standardwebhooks.Webhook(secret).verify(BODY, headers) == {
        "specversion": "1.0",
        "id": "j:1",
        "type": "jobline.job.succeeded",
        "data": {"x": 1},
    }


def test_the_library_refuses_our_headers_for_another_body_or_secret():
    secret = signing.generate_secret()
    headers = signing.headers([secret], "msg_1", int(datetime.now(UTC).timestamp()), BODY)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(BODY + b" ", headers)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(signing.generate_secret()).verify(BODY, headers)


def test_the_librarys_signature_verifies_with_ours():
    secret = signing.generate_secret()
    stamp = datetime.fromtimestamp(NOW, tz=UTC)
    lib = standardwebhooks.Webhook(secret).sign("msg_2", stamp, BODY.decode())
    received = {"Webhook-Id": "msg_2", "Webhook-Timestamp": str(NOW), "Webhook-Signature": lib}
    signing.verify(secret, received, BODY, now=NOW + 10)
    assert lib == signing.signature(secret, "msg_2", NOW, BODY)


def test_during_a_rotation_both_secrets_sign_and_either_verifies():
    old, new = signing.generate_secret(), signing.generate_secret()
    now = int(datetime.now(UTC).timestamp())
    headers = signing.headers([new, old], "msg_3", now, BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        standardwebhooks.Webhook(secret).verify(BODY, headers)
        signing.verify(secret, headers, BODY, now=now)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"webhook-timestamp": str(NOW - 301)}, "tolerance"),
        ({"webhook-timestamp": "soon"}, "integer"),
        ({"webhook-id": ""}, "missing"),
        ({"webhook-signature": "v1,AAAA"}, "no matching"),
    ],
)
def test_our_verify_refuses_what_it_should(change, message):
    secret = signing.generate_secret()
    headers = {**signing.headers([secret], "m", NOW, BODY), **change}
    with pytest.raises(signing.InvalidSignature, match=message):
        signing.verify(secret, headers, BODY, now=NOW)


def test_a_secret_that_is_not_base64_is_refused():
    with pytest.raises(signing.InvalidSignature):
        signing.secret_key("whsec_***")
    with pytest.raises(ValueError, match="secret"):
        signing.headers([], "m", NOW, BODY)


# --- addresses -------------------------------------------------------------------------------

STRICT = AddressPolicy()


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("100.64.0.1", "reserved"),  # shared address space (CGNAT)
        ("192.0.2.1", "private"),  # documentation
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:10.0.0.1", "private"),
        ("2002:0a00:0001::1", "private"),  # 6to4 around 10.0.0.1
    ],
)
def test_non_public_addresses_are_refused(address, reason):
    assert addresses.refusal(ipaddress.ip_address(address)) == reason
    with pytest.raises(addresses.RefusedAddress, match=reason):
        addresses.check_address(STRICT, address)


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_pass(address):
    addresses.check_address(STRICT, address)


def test_allow_private_and_allowed_networks():
    addresses.check_address(AddressPolicy(allow_private=True), "127.0.0.1")
    policy = AddressPolicy.of(False, ["10.20.0.0/16"])
    addresses.check_address(policy, "10.20.3.4")
    addresses.check_address(policy, "::ffff:10.20.3.4")
    with pytest.raises(addresses.RefusedAddress):
        addresses.check_address(policy, "10.21.0.1")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/hook",
        "http://[::1]/hook",
        "https://10.0.0.5/",
        "http://localhost:8080/",
        "http://api.localhost/",
        "http://LOCALHOST./x",
        "http://127.1/",  # the short forms resolvers accept
        "http://2130706433/",
        "http://0x7f.0.0.1/",
        "http://0177.0.0.1/",
        "http://10.1/",
    ],
)
def test_urls_naming_this_machine_or_private_addresses_are_refused_when_saved(url):
    with pytest.raises(addresses.RefusedAddress):
        addresses.check_url(STRICT, url)
    addresses.check_url(AddressPolicy(allow_private=True), url)


@pytest.mark.parametrize(
    "url", ["ftp://example.com/", "http:///path", "//example.com", "http://u:p@example.com/"]
)
def test_malformed_urls_are_invalid(url):
    with pytest.raises(addresses.InvalidUrl):
        addresses.check_url(AddressPolicy(allow_private=True), url)


@pytest.mark.parametrize(
    "host", ["1.2.3", "example.com", "0x", "1.2.3.4.5", "256.1.1.1", "1.2.3.256"]
)
def test_names_that_are_not_numeric_addresses(host):
    literal = addresses.Target("http", host, 80).literal
    assert literal is None or str(literal) == "1.2.0.3"


def test_local_names_pass_when_loopback_is_an_allowed_network():
    addresses.check_url(AddressPolicy.of(False, ["127.0.0.1/32"]), "http://localhost:8000/")


def test_a_public_name_passes_when_saved_and_its_target_has_the_default_port():
    target = addresses.check_url(STRICT, "https://Hooks.Example.com/a?b=c")
    assert (target.scheme, target.host, target.port) == ("https", "hooks.example.com", 443)
    assert addresses.check_url(STRICT, "http://example.com:8080").port == 8080


def test_a_resolved_name_is_refused_if_any_address_is_not_public():
    assert addresses.pick(STRICT, ["93.184.215.14", "8.8.8.8"]) == "93.184.215.14"
    with pytest.raises(addresses.RefusedAddress, match="private"):
        addresses.pick(STRICT, ["93.184.215.14", "10.0.0.1"])
    with pytest.raises(addresses.RefusedAddress, match="no address"):
        addresses.pick(STRICT, [])


# --- event types -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patterns", "event_type", "expected"),
    [
        (["*"], "jobline.job.dead", True),
        (["jobline.job.*"], "jobline.job.succeeded", True),
        (["jobline.job.succeeded"], "jobline.job.succeeded", True),
        (["jobline.job.succeeded"], "jobline.job.dead", False),
        (["jobline.job.dead", "jobline.job.cancelled"], "jobline.job.cancelled", True),
        (["jobline.job.*"], "jobline.insight.anomaly", False),
    ],
)
def test_matching(patterns, event_type, expected):
    assert matching.matches(patterns, event_type) is expected


def test_every_lifecycle_event_type_can_be_subscribed_to():
    names = {"scheduled", "queued", "started", "retrying", "succeeded", "dead", "cancelled"}
    assert set(matching.EVENT_TYPES) == {cloudevent.JOB_EVENT_PREFIX + n for n in names}


def test_validate_deduplicates_and_refuses_unknown_types():
    assert matching.validate(["*", "*", "jobline.job.dead"]) == ["*", "jobline.job.dead"]
    with pytest.raises(matching.UnknownEventType):
        matching.validate(["jobline.job.running"])
    with pytest.raises(matching.UnknownEventType):
        matching.validate([])


# --- retry and disabling ---------------------------------------------------------------------

POLICY = retry.RetryPolicy(max_attempts=4, base_seconds=10, max_seconds=60, disable_after=3)
T0 = datetime(2030, 1, 1, tzinfo=UTC)


def test_retries_back_off_exponentially_with_jitter_within_bounds():
    rng = random.Random(7)
    for attempts, full in ((1, 10), (2, 20), (3, 40)):
        for _ in range(50):
            when = retry.next_attempt_at(POLICY, attempts, T0, rng)
            assert when is not None
            assert timedelta(seconds=full / 2) <= when - T0 <= timedelta(seconds=full)


def test_the_delay_is_capped():
    policy = retry.RetryPolicy(max_attempts=50, base_seconds=10, max_seconds=60, disable_after=1)
    assert retry.delay(policy, 40, random.Random(1)) <= 60


def test_after_the_last_attempt_the_delivery_fails():
    assert retry.next_attempt_at(POLICY, 4, T0, random.Random(1)) is None
    assert retry.next_attempt_at(POLICY, 9, T0, random.Random(1)) is None


def test_the_same_seed_gives_the_same_schedule():
    a = [retry.delay(POLICY, n, random.Random(3)) for n in (1, 2, 3)]
    b = [retry.delay(POLICY, n, random.Random(3)) for n in (1, 2, 3)]
    assert a == b


def test_an_endpoint_is_disabled_after_enough_failed_deliveries_in_a_row():
    assert not retry.disables(POLICY, 2)
    assert retry.disables(POLICY, 3)


@pytest.mark.parametrize(("status", "ok"), [(200, True), (204, True), (301, False), (500, False)])
def test_only_2xx_delivers(status, ok):
    assert retry.is_success(status) is ok


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0, "base_seconds": 1, "max_seconds": 1, "disable_after": 1},
        {"max_attempts": 1, "base_seconds": 2, "max_seconds": 1, "disable_after": 1},
        {"max_attempts": 1, "base_seconds": 1, "max_seconds": 1, "disable_after": 0},
    ],
)
def test_nonsense_policies_are_refused(kwargs):
    with pytest.raises(ValueError, match="must be"):
        retry.RetryPolicy(**kwargs)


# --- the API's models agree with the rules ---------------------------------------------------


def test_the_apis_event_types_are_the_domains():
    assert list(get_args(api.EventTypePattern)) == list(matching.PATTERNS)


@pytest.mark.parametrize(
    ("url", "valid"),
    [
        ("https://hooks.example.com/jobline?x=1", True),
        ("http://203.0.113.9:8080/", True),
        ("http://example.com", True),
        ("http://example.com:65536/", False),
        ("http://example.com:0/", False),
        ("http://user@example.com/", False),
        ("http://[::1]/", False),
        ("ftp://example.com/", False),
        ("http://exa mple.com/", False),
    ],
)
def test_the_url_pattern(url, valid):
    assert bool(re.match(api.URL_PATTERN, url)) is valid


def test_every_url_the_pattern_admits_parses():
    # What the schema admits never fails parsing (only the address policy may refuse it).
    for url in (
        "http://a",
        "http://-",
        "http://.",
        "http://0",
        "http://1.2.3.4:1/!~",
        "http://a/#",
    ):
        assert re.match(api.URL_PATTERN, url)
        addresses.check_url(AddressPolicy(allow_private=True), url)


def test_requests_refuse_unknown_fields_and_event_types():
    with pytest.raises(ValidationError):
        api.WebhookIn.model_validate({"url": "https://a.example", "event_types": ["nope"]})
    with pytest.raises(ValidationError):
        api.WebhookIn.model_validate({"url": "https://a.example", "event_types": ["*"], "extra": 1})
    for model in (api.WebhookIn, api.WebhookPatch):
        extra: Any = model.model_config.get("json_schema_extra")
        for example in extra["examples"]:
            model.model_validate(example)
