"""The ``aigateway`` command: one module per subcommand, each owning its arguments
(``add_arguments``) and its work (``run``). Every failure is one line on stderr: exit 2
for a bad config or bad usage, 1 for anything else."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from aigateway import __version__
from aigateway.extproc.gateway.config import ConfigError
from aigateway.extproc.ops.cli import (
    check_config,
    envoy_config,
    health,
    mock_backend,
    serve,
    up,
)
from aigateway.extproc.ops.cli.common import EXIT_OK, EXIT_USAGE, HelpFormatter, fail

#: Subcommand name -> its module, in the order ``--help`` lists them.
COMMANDS: dict[str, ModuleType] = {
    "up": up,
    "serve": serve,
    "envoy-config": envoy_config,
    "check-config": check_config,
    "health": health,
    "mock-backend": mock_backend,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aigateway",
        description="LLM gateway data plane: an Envoy external processor that routes,"
        " translates and meters LLM API requests.",
        formatter_class=HelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument(
        "--version", action="version", version=f"aigateway {__version__}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        command = sub.add_parser(
            name,
            help=module.HELP,
            description=module.DESCRIPTION,
            formatter_class=HelpFormatter,
            allow_abbrev=False,
        )
        module.add_arguments(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # serve --workers starts each worker with the same arguments
    if hasattr(args, "log_level"):
        from aigateway.extproc.ops.logs import setup_logging

        setup_logging(args.log_level, args.log_format)
    try:
        code: int = COMMANDS[args.command].run(args)
    except ConfigError as exc:
        return fail(f"invalid config: {exc}", EXIT_USAGE)
    except KeyboardInterrupt:
        return EXIT_OK
    return code


__all__ = ["COMMANDS", "build_parser", "main"]
