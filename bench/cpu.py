"""CPU seconds of the processes under test, read from ``/proc`` (Linux).

A process's share is its own user + system time plus that of its live children; PostgreSQL's
backends come and go, so the postmaster's ``cutime``/``cstime`` (the time of children it has
already reaped) is counted as well.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; everything after its ")" is split.
    return raw[raw.rindex(")") + 2 :].split()


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat(int(entry))
        if fields is not None:
            tree.setdefault(int(fields[1]), []).append(int(entry))
    return tree


def process_seconds(pid: int, tree: Mapping[int, list[int]] | None = None) -> float:
    """CPU seconds of ``pid``, its reaped children and its live descendants."""
    tree = _children() if tree is None else tree
    fields = _stat(pid)
    if fields is None:
        return 0.0
    # After the name: utime, stime, cutime, cstime are fields 11..14 (0-based).
    total = sum(int(v) for v in fields[11:15]) / _TICK
    for child in tree.get(pid, []):
        total += process_seconds(child, tree)
    return total


@dataclass(frozen=True)
class Sample:
    seconds: dict[str, float]

    def minus(self, earlier: Sample) -> dict[str, float]:
        return {
            name: self.seconds.get(name, 0.0) - earlier.seconds.get(name, 0.0)
            for name in self.seconds
        }


def sample(pids: Mapping[str, int | None]) -> Sample:
    """CPU seconds so far of each named process (0 for one that is not running)."""
    tree = _children()
    seconds = {}
    for name, pid in pids.items():
        if pid == os.getpid():
            # This process's own time only: the services are its children.
            own = os.times()
            seconds[name] = own.user + own.system
        else:
            seconds[name] = process_seconds(pid, tree) if pid else 0.0
    return Sample(seconds)


def per_job_ms(used: Mapping[str, float], jobs: int) -> dict[str, float]:
    """CPU milliseconds per job for each process, plus the servers' sum (the client apart)."""
    out = {name: round(seconds * 1000 / jobs, 3) for name, seconds in used.items()}
    out["servers"] = round(
        sum(seconds for name, seconds in used.items() if name != "client") * 1000 / jobs, 3
    )
    return out
