"""The ``sei-send`` command: argument parsing only; the work is done by the library functions."""

from __future__ import annotations

import argparse
import sys

from fitting import __version__


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of the ``sei-send`` command."""
    parser = argparse.ArgumentParser(
        prog="sei-send",
        description="Simulate and analyse cryo-SEND (4D-STEM) data of Li-metal SEIs. Q = 1/d [Å⁻¹] throughout.",
    )
    parser.add_argument("--version", action="version", version=f"sei-send {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("demo", help="run the demonstration on the built-in default scene")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sei-send`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "demo":
        from fitting.demo import run_demo

        return run_demo()
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
