"""``yolos`` console script: one parser, one sub-command per module in this package.

Each command module defines ``add_parser(subparsers)`` (which sets ``func``) and keeps its
heavy imports inside the function it runs, so ``yolos --help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ["predict", "info", "train", "val", "data", "export", "benchmark", "flops", "analyze", "serve"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="yolos", description="YOLOS object detection: predict, train, evaluate, analyze, export."
    )
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error instead of one line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"yolos.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"yolos.cli.{name}":
                continue  # command not part of this build
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        # Expected user errors (a missing or unwritable file, a bad value) get one clear line,
        # not a traceback; `yolos --debug COMMAND ...` shows the traceback instead.
        from ..errors import YolosError

        if args.debug:
            raise
        message = str(err).strip() or type(err).__name__
        if not isinstance(err, YolosError):  # others' messages can carry a whole traceback
            message = message.splitlines()[0]
        print(f"yolos {args.command}: error: {message}", file=sys.stderr)
        return 2
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
