"""The ``refmodel`` command line: a thin shell over the library."""

from __future__ import annotations

import argparse
import sys


def _cmd_demo(args) -> int:
    from refmodel.demo import run_demo

    run_demo(out=sys.stdout)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from refmodel import __version__

    parser = argparse.ArgumentParser(prog="refmodel", description=__doc__)
    parser.add_argument("--version", action="version", version=f"refmodel {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    demo = commands.add_parser("demo", help="run the built-in example and print what it computed")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
