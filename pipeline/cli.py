"""``hepatoplan`` command line: ``hepatoplan SUBCOMMAND ...``.

Each subcommand lives in its own module of ``pipeline/`` exposing ``register(subparsers)``, which
adds its parser and sets ``func=run`` with ``run(args) -> int``. :func:`main` is testable
in-process: ``main(["plan", ...])`` returns the exit status.

Exit status: 0 success, 1 a batch with failed studies, 2 bad input (one clear line on stderr, no
traceback, nothing written).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from hepatoplan import __version__
from hepatoplan.errors import HepatoplanError

#: Subcommand → the ``pipeline`` module registering it, in the order ``--help`` lists them.
SUBCOMMANDS = {
    "plan": "hepatoplan.pipeline.cmd_plan",
    "demo": "hepatoplan.pipeline.cmd_plan",
    "couinaud": "hepatoplan.pipeline.cmd_couinaud",
    "segment": "hepatoplan.pipeline.cmd_segment",
    "growth": "hepatoplan.pipeline.cmd_staging",
    "stage": "hepatoplan.pipeline.cmd_staging",
    "batch": "hepatoplan.pipeline.cmd_batch",
}

log = logging.getLogger(__name__)


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so errors follow the one-line, exit-2 rule.

    Abbreviated long options are refused: ``--margin`` must not silently mean ``--margin-mm``.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):  # noqa: D102
        raise HepatoplanError(f"{self.prog}: {message} (see '{self.prog} --help')")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with ``argv`` naming a subcommand, only that subcommand's module is imported
    (each pulls in its own heavy libraries, which would slow every command down)."""
    parser = _Parser(prog="hepatoplan", description="Liver-surgery planning from CT and MR studies.")
    parser.add_argument("--version", action="version", version=f"hepatoplan {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", parser_class=_Parser)
    chosen = next((a for a in argv or () if not a.startswith("-")), None)
    modules = [SUBCOMMANDS[chosen]] if chosen in SUBCOMMANDS else list(dict.fromkeys(SUBCOMMANDS.values()))
    for name in modules:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        parser = build_parser(argv)
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        logging.basicConfig(
            level=logging.INFO if args.verbose else logging.WARNING,
            format="%(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        return int(args.func(args) or 0)
    except HepatoplanError as exc:
        print(f"hepatoplan: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hepatoplan: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
