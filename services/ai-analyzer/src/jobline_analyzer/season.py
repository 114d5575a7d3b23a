"""One bin of a seasonal profile learning from a point (pure; used by :mod:`.core`)."""

from __future__ import annotations


def learn_bin(
    table: list[float | None], counts: list[int], b: int, *, base: float, limit: float,
    per_bin: float, gamma: float,
) -> None:  # fmt: skip
    """Move bin ``b`` of ``table`` towards ``base`` (clipped at ``limit``).

    A bin's first visit sets it to the mean of its points; visit v then moves it by about
    max(gamma, 1/v) in all, however many points a visit holds (or a wide bin would chase the
    noise like a fast level). The 1/v start averages the first visits: the first was learnt
    against a level and daily profile still settling (after the first weekend, Sunday's bins
    were otherwise wrong for weeks).
    """
    old, n, width = table[b], counts[b], max(per_bin, 1.0)
    step = max(-limit, min(limit, base - (old or 0.0)))
    if old is None or n < per_bin:
        table[b] = base if old is None else old + step / (n + 1)
    else:
        visit = n / width
        table[b] = old + max(gamma, 1.0 / (visit + 1.0)) / width * step
    if n < width / gamma:
        counts[b] = n + 1
