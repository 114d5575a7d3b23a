"""`jobline-analyzer` command line: `serve` the service, or `score` a CSV offline."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _score(args: argparse.Namespace) -> int:
    from jobline_analyzer.score import InvalidSeries, read_series, score_series, write_scores

    try:
        with open(args.file, newline="") as f:
            rows = read_series(f)
    except (OSError, InvalidSeries) as exc:
        print(f"jobline-analyzer score: {exc}", file=sys.stderr)
        return 2
    points = score_series(rows, len(rows))
    if args.output in (None, "-"):
        write_scores(points, sys.stdout)
    else:
        with open(args.output, "w", newline="") as out:
            write_scores(points, out)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from jobline_analyzer import server

    server.main()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `jobline-analyzer` and `python -m jobline_analyzer`."""
    parser = argparse.ArgumentParser(prog="jobline-analyzer", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    score = sub.add_parser("score", help="score a timestamp,value CSV (NAB format)")
    score.add_argument("file", help="input CSV with timestamp,value columns")
    score.add_argument("--output", "-o", help="output CSV (default: stdout)")
    score.set_defaults(func=_score)
    serve = sub.add_parser("serve", help="run the analyzer service (health, metrics; the default)")
    serve.set_defaults(func=_serve)
    args = parser.parse_args(argv)
    if args.command is None:
        args.func = _serve
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
