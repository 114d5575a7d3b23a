"""One webhook attempt over HTTP: resolve, check every address, POST to a checked one.

The connection goes to the address that was checked (the URL's host is replaced by it; the
``Host`` header and TLS server name stay the original name, and the certificate is verified
against that name), so a name that resolves to a public address for the check and a
private one for the connection (DNS rebinding) cannot reach the private one. Redirects are
not followed (a 3xx is a failed attempt) and proxies from the environment are not used.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass
from typing import Final

import httpx

from jobline.core.webhooks import addresses, retry, signing
from jobline.core.webhooks.addresses import AddressPolicy

USER_AGENT: Final = "jobline-webhooks/1"
CONTENT_TYPE: Final = "application/cloudevents+json"
# The most of an error text kept in the delivery log.
ERROR_CHARS: Final = 500


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one POST came to: ``error`` is None exactly when it delivered (2xx)."""

    status_code: int | None
    error: str | None
    seconds: float
    kind: str  # success, http_error, network_error, refused (the metric's label)


def make_client(timeout: float, concurrency: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        trust_env=False,
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        headers={"User-Agent": USER_AGENT},
    )


async def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, in the resolver's order, without duplicates."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def checked_address(policy: AddressPolicy, url: str) -> tuple[addresses.Target, str]:
    """The URL's target and the address to connect to, once the policy allows all of them."""
    # Not check_url: a name is judged by what it resolves to now, not by how it reads.
    target = addresses.parse_url(url)
    literal = target.literal
    if literal is not None:
        addresses.check_address(policy, literal)
        return target, str(literal)
    try:
        resolved = await resolve(target.host, target.port)
    except OSError as exc:
        raise addresses.RefusedAddress(f"cannot resolve {target.host}: {exc}") from None
    return target, addresses.pick(policy, resolved)


def _clip(text: str) -> str:
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 1] + "…"


async def post(
    client: httpx.AsyncClient,
    policy: AddressPolicy,
    *,
    url: str,
    msg_id: str,
    secrets: tuple[str, ...],
    body: bytes,
) -> Attempt:
    """POST ``body`` signed with ``secrets`` to ``url``; never raises for the receiver's sake."""
    started = time.monotonic()
    try:
        target, address = await checked_address(policy, url)
    except (addresses.RefusedAddress, addresses.InvalidUrl) as exc:
        return Attempt(None, _clip(f"refused: {exc}"), time.monotonic() - started, "refused")
    original = httpx.URL(url)
    headers = {
        "Host": original.netloc.decode("ascii"),
        "Content-Type": CONTENT_TYPE,
        **signing.headers(secrets, msg_id, int(time.time()), body),
    }
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    request = client.build_request(
        "POST",
        original.copy_with(host=address),
        content=body,
        headers=headers,
        extensions=extensions,
    )
    try:
        response = await client.send(request, stream=True)
        await response.aclose()  # the answer's body is not read: only its status counts
    except httpx.TimeoutException:
        return Attempt(None, "timeout", time.monotonic() - started, "network_error")
    except httpx.HTTPError as exc:
        error = _clip(f"{type(exc).__name__}: {exc}")
        return Attempt(None, error, time.monotonic() - started, "network_error")
    seconds = time.monotonic() - started
    if retry.is_success(response.status_code):
        return Attempt(response.status_code, None, seconds, "success")
    return Attempt(response.status_code, f"HTTP {response.status_code}", seconds, "http_error")
