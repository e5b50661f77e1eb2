"""``python -m benchmark``: list plugins, evaluate sample files, print leaderboards."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from benchmark.registry import KINDS, RegistryError, get_plugins


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--block-plugin", action="append", default=[], metavar="NAME", help="do not load this plugin (entry-point name); repeatable")


def cmd_list(args: argparse.Namespace) -> int:
    plugins = get_plugins(blocked=tuple(args.block_plugin))
    kinds = [args.kind] if args.kind else list(KINDS)
    for kind in kinds:
        reg = plugins[kind]
        print(f"{kind}:")
        if not len(reg):
            print("  (none registered)")
        width = max((len(e.name) for e in reg), default=0)
        for e in reg:
            print(f"  {e.name.ljust(width)}  {e.description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmark", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list registered datasets, metrics, tasks, models, oracles")
    p.add_argument("kind", nargs="?", choices=KINDS)
    _add_common(p)
    p.set_defaults(func=cmd_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
