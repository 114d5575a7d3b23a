"""``python -m bench.profile FILE [N] [FILTER]``: the top frames of a py-spy collapsed-stack file.

Self time first (where the CPU is spent), then inclusive time of the frames whose text
contains FILTER (default "jobline": our own code, to see which call of ours is expensive).
"""

from __future__ import annotations

import collections
import sys


def main(argv: list[str]) -> int:
    path = argv[0]
    count = int(argv[1]) if len(argv) > 1 else 30
    wanted = argv[2] if len(argv) > 2 else "jobline"
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, count_text = line.rstrip().rpartition(" ")
            samples = int(count_text)
            total += samples
            frames = stack.split(";")
            own[frames[-1]] += samples
            for frame in set(frames):
                inclusive[frame] += samples
    print(f"{total} samples")
    print("--- self")
    for frame, hits in own.most_common(count):
        print(f"{100 * hits / total:5.1f}% {frame}")
    print(f"--- inclusive, frames containing {wanted!r}")
    shown = [(f, hits) for f, hits in inclusive.most_common() if wanted in f][:count]
    for frame, hits in shown:
        print(f"{100 * hits / total:5.1f}% {frame}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
