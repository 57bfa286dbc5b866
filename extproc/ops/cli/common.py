"""What every subcommand shares: exit codes, argument types, the logging flags and the
default addresses of the parts ``aigateway`` starts."""

from __future__ import annotations

import argparse
import sys

from aigateway.extproc.framework.addresses import Address
from aigateway.extproc.gateway.app import (
    DEFAULT_DRAIN_TIMEOUT,
    DEFAULT_EXTPROC_ADDR,
    DEFAULT_METRICS_ADDR,
)
from aigateway.extproc.ops.logs import LEVELS

#: Envoy's client listener, its admin interface and the demo's mock backend.
DEFAULT_LISTEN_ADDR = "127.0.0.1:10000"
DEFAULT_ADMIN_ADDR = "127.0.0.1:9901"
DEFAULT_MOCK_ADDR = "127.0.0.1:8000"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def fail(message: str, code: int = EXIT_FAILED) -> int:
    """Print ``aigateway: message`` on stderr (the one-line error of every command)."""
    print(f"aigateway: {message}", file=sys.stderr)
    return code


def address(text: str) -> Address:
    try:
        return Address.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def worker_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def add_config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", required=True, metavar="FILE", help="the gateway config file (YAML)"
    )


def _add_address_flag(parser: argparse.ArgumentParser, flag: str, default: str, help: str) -> None:
    parser.add_argument(flag, type=address, default=default, metavar="ADDR", help=help)


def add_listen_flag(parser: argparse.ArgumentParser) -> None:
    _add_address_flag(parser, "--listen", DEFAULT_LISTEN_ADDR, "Envoy's client listener")


def add_extproc_flag(parser: argparse.ArgumentParser, help: str) -> None:
    """``--extproc-addr`` (one address, defaulting to ``serve``'s)."""
    _add_address_flag(parser, "--extproc-addr", DEFAULT_EXTPROC_ADDR, help)


def add_metrics_flag(parser: argparse.ArgumentParser) -> None:
    _add_address_flag(
        parser, "--metrics-addr", DEFAULT_METRICS_ADDR, "Prometheus /metrics listen address"
    )


def add_admin_flag(parser: argparse.ArgumentParser) -> None:
    _add_address_flag(parser, "--admin-addr", DEFAULT_ADMIN_ADDR, "Envoy's admin interface")


def add_drain_timeout_flag(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument(
        "--drain-timeout",
        type=seconds,
        default=DEFAULT_DRAIN_TIMEOUT,
        metavar="SECONDS",
        help=help,
    )


def add_logging_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level", choices=LEVELS, default="info", help="least severe level logged"
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text for people, json for log pipelines (one object per line)",
    )


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions keep their line breaks; every flag's help ends with its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "(default" not in text
            and action.default is not argparse.SUPPRESS
            and action.default not in (None, False, [])
            and action.option_strings
        ):
            text += " (default: %(default)s)"
        return text
