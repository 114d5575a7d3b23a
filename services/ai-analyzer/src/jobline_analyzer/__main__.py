"""`jobline-analyzer` command line: `score` a CSV now; `serve` the service later."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _score(args: argparse.Namespace) -> int:
    from jobline_analyzer.score import read_series, score_series, write_scores

    with open(args.file, newline="") as f:
        rows = read_series(f)
    points = score_series(rows, len(rows))
    if args.output in (None, "-"):
        write_scores(points, sys.stdout)
    else:
        with open(args.output, "w", newline="") as out:
            write_scores(points, out)
    return 0


def _serve(args: argparse.Namespace) -> int:
    print("not implemented yet", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `jobline-analyzer` and `python -m jobline_analyzer`."""
    parser = argparse.ArgumentParser(prog="jobline-analyzer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    score = sub.add_parser("score", help="score a timestamp,value CSV (NAB format)")
    score.add_argument("file", help="input CSV with timestamp,value columns")
    score.add_argument("--output", "-o", help="output CSV (default: stdout)")
    score.set_defaults(func=_score)
    serve = sub.add_parser("serve", help="run the analyzer service (not implemented yet)")
    serve.set_defaults(func=_serve)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
