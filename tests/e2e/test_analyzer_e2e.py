"""The analyzer on the running stack: `flaky` starts failing, an anomaly appears on the insights
topic and in the API, and the recommendation for `flaky` reflects the attempts it needed.

Gateway, relay, worker (example handlers) and analyzer run as processes. The analyzer uses
one-second buckets, so its detectors (which count in minutes) run on a compressed clock and
the test takes seconds, not an hour.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from jobline.core import cloudevent as events
from jobline.core import topics
from tests.support import GATEWAY_ENV, RELAY_ENV, Api, TopicReader, start_worker

ANALYZER_ENV = {
    "JOBLINE_ANALYZER_BUCKET_SECONDS": "1",
    "JOBLINE_ANALYZER_DETECT_INTERVAL_SECONDS": "0.5",
    "JOBLINE_ANALYZER_CLOSE_DELAY_SECONDS": "1",
    "JOBLINE_ANALYZER_POLL_TIMEOUT_MS": "200",
    "JOBLINE_LOG_LEVEL": "WARNING",
}
PER_SECOND = 20


async def _submit_for(api: Api, seconds: int, failures: int) -> list[dict[str, Any]]:
    """``PER_SECOND`` flaky jobs a second; each fails its first ``failures`` attempts."""
    jobs: list[dict[str, Any]] = []
    for _ in range(seconds):
        started = time.monotonic()
        jobs += await api.submit_batch(
            [
                {
                    "type": "flaky",
                    "payload": {"failures": failures},
                    "max_attempts": 5,
                    "backoff": {"kind": "fixed", "base_seconds": 0.2, "max_seconds": 0.2},
                }
                for _ in range(PER_SECOND)
            ]
        )
        # Pace the load at one batch a second (this is the workload, not a wait).
        await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
    return jobs


async def _poll(check: Any, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out after {seconds}s waiting for {what}")


async def test_flaky_failing_shows_up_as_an_anomaly_and_in_the_recommendation(
    stack: Any, make_api_key: Any, kafka_settings: Any
) -> None:
    gateway = stack.start("gateway", env=GATEWAY_ENV)
    stack.start("relay", env=RELAY_ENV)
    start_worker(stack, "--concurrency", "32")
    analyzer = stack.start("analyzer", env=ANALYZER_ENV)
    key = await make_api_key()
    api = Api(gateway.url, key)
    insights = httpx.AsyncClient(
        base_url=analyzer.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    topic = topics.insights_topic(kafka_settings.topic_prefix)
    try:
        async with TopicReader(kafka_settings, topic) as reader:
            # A quiet baseline, then `flaky` fails its first two attempts for a while.
            await _submit_for(api, seconds=8, failures=0)
            await _submit_for(api, seconds=6, failures=2)

            async def spike() -> dict[str, Any] | None:
                r = await insights.get(
                    "/v1/insights/anomalies", params={"type": "flaky", "kind": "failure_rate_spike"}
                )
                assert r.status_code == 200, r.text
                items = r.json()["items"]
                return items[0] if items else None

            finding = await _poll(spike, 60, "a failure_rate_spike for flaky in the API")
            assert finding["job_type"] == "flaky"
            # The baseline had no failures. The detector fires at the onset, whose window
            # still mixes quiet and failing seconds, so the observed rate is well above the
            # baseline but not yet the burst's full ~2/3 per attempt.
            assert finding["baseline"] < 0.05
            assert finding["observed"] >= finding["baseline"] + 0.1

            def on_topic(records: list[Any]) -> bool:
                return any(events.decode(r.value).get_id() == finding["id"] for r in records)

            await reader.until(on_topic, timeout=30)

            async def settled() -> dict[str, Any] | None:
                r = await insights.get("/v1/insights/recommendations", params={"type": "flaky"})
                assert r.status_code == 200, r.text
                items = r.json()["items"]
                if not items:
                    return None
                attempts = {a["attempt"]: a for a in items[0]["attempts"]}
                # Every burst job has reached its third attempt.
                return (
                    items[0] if attempts.get(3, {}).get("successes", 0) >= 6 * PER_SECOND else None
                )

            rec = await _poll(settled, 60, "every flaky job to finish")
            attempts = {a["attempt"]: a for a in rec["attempts"]}
            assert attempts[2]["successes"] == 0  # burst jobs fail attempt 2 as well
            assert attempts[3]["p"] == 1.0  # ... and always succeed on attempt 3
            assert rec["policy"]["max_attempts"] == 3
            assert rec["policy"]["non_retryable_errors"] == []
    finally:
        await api.close()
        await insights.aclose()
    assert analyzer.terminate() == 0  # SIGTERM: clean exit
