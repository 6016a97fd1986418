"""``python -m nemo_rl_sweep <command>`` (also installed as ``nemo-rl-sweep``).

Commands:
  report <sweep folder or storage URL> [--study NAME] [--out DIR] [--no-plots]
      print the summary of a study and (re)write its plots
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from nemo_rl_sweep.outputs import report

    parser = argparse.ArgumentParser(
        prog="python -m nemo_rl_sweep", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    rep = commands.add_parser(
        "report",
        help="print the summary of a study and (re)write its plots",
        description=report.__doc__.split("\n\n")[0] if report.__doc__ else None,
    )
    report.add_arguments(rep)
    args = parser.parse_args(argv)
    if args.command == "report":
        return report.run_report(args.target, args.study, out=args.out, plots=not args.no_plots)
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # `... report DIR | head`: the reader left, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
