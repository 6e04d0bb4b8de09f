"""The ``refmodel`` command line: a thin shell over the library."""

from __future__ import annotations

import argparse
import sys


def _cmd_demo(args) -> int:
    from refmodel.demo import run_demo

    run_demo(out=sys.stdout)
    return 0


def _cmd_inspect(args) -> int:
    from refmodel.vectors import VectorFile
    from refmodel.vectors.summary import summarize

    with VectorFile(args.file) as vf:
        print(summarize(vf))
    return 0


def _cmd_check(args) -> int:
    from refmodel.vectors import compare_files

    result = compare_files(args.golden, args.other)
    print(result.report())
    return 0 if result.equal else 1


def _cmd_export_hex(args) -> int:
    from refmodel.vectors import export_hex

    manifest = export_hex(args.file, args.dir)
    print(f"wrote {len(manifest['files'])} hex files and manifest.json to {args.dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from refmodel import __version__

    parser = argparse.ArgumentParser(prog="refmodel", description=__doc__)
    parser.add_argument("--version", action="version", version=f"refmodel {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    demo = commands.add_parser("demo", help="run the built-in example and print what it computed")
    demo.set_defaults(func=_cmd_demo)
    inspect = commands.add_parser(
        "inspect", help="summarize a vector file: layers, shapes, formats, spike rates, saturation counts",
        description="Validate a vector file and print its layers, shapes, formats, spike rate per spike "
                    "trace and its saturation (and other) counts.")
    inspect.add_argument("file", help="vector file (HDF5)")
    inspect.set_defaults(func=_cmd_inspect)
    check = commands.add_parser(
        "check", help="compare two vector files bit for bit (exit 0 equal, 1 different, 2 unreadable)",
        description="Compare OTHER with GOLDEN: print the first mismatch (layer, signal, timestep, batch "
                    "index, channel, y, x, expected, got) and the number of mismatches per signal. "
                    "Exit status 0 when equal, 1 when not, 2 when a file cannot be read.")
    check.add_argument("golden", help="the golden vector file")
    check.add_argument("other", help="the vector file to check against it")
    check.set_defaults(func=_cmd_check)
    export = commands.add_parser(
        "export-hex", help="write $readmemh files and a manifest.json for a vector file",
        description="Write one $readmemh file per parameter, stimulus, output, count and per trace "
                    "timestep (two's complement at the declared width) and manifest.json into DIR, "
                    "which must not exist or be empty.")
    export.add_argument("file", help="vector file (HDF5)")
    export.add_argument("dir", help="output directory")
    export.set_defaults(func=_cmd_export_hex)
    return parser


def main(argv=None) -> int:
    from refmodel.vectors import VectorFileError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except VectorFileError as exc:
        print(f"refmodel {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
