"""The `anynet-search` command line: one sub-command per job, each a thin layer over the library."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def _describe(args: argparse.Namespace) -> int:
    from anynet_search.describe import describe_config, resolve_config

    print(describe_config(resolve_config(args.config), args.resolution))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command."""
    parser = argparse.ArgumentParser(prog="anynet-search", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("describe", help="per-stage table and flops/params/acts of a published model or config file")
    p.add_argument("config", help="a published name (RegNetX-400MF ...) or a YAML/JSON AnyNetConfig file")
    p.add_argument("--resolution", type=int, default=224, help="input resolution in pixels (default 224)")
    p.set_defaults(func=_describe)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CliError, ValueError, FileNotFoundError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"anynet-search {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"anynet-search {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
