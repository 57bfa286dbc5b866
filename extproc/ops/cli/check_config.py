"""``aigateway check-config``: validate a config file and its secrets."""

from __future__ import annotations

import argparse

from aigateway.extproc.gateway import load_config, load_secrets
from aigateway.extproc.gateway.backends import RoutingTable
from aigateway.extproc.ops.cli.common import EXIT_OK, add_config_flag

HELP = "validate a config file and its secrets"
DESCRIPTION = """\
Validate a config file and read the secrets it names, then list each model with its
backend and the credentials that backend will use, and the limits rules. Exits 0 when
the file is usable, 2 with the key path and the reason when it is not."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_flag(parser)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    secrets = load_secrets(config, args.config)
    print(f"{args.config}: ok ({len(config.backends)} backend(s), {len(config.models)} model(s))")
    for model in config.models:
        backend = config.backend(model.backend)
        upstream = f" as {model.backend_model}" if model.backend_model else ""
        print(f"  {model.name} -> {backend.name} ({backend.schema_}, {backend.endpoint}){upstream}")
    for note in RoutingTable(config, secrets).credential_notes():
        print(f"  {note}")
    limits = config.limits
    if limits.rules:
        print(f"  limits in {limits.store} (on store error: {limits.on_store_error}):")
        for rule in limits.rules:
            print(f"    {rule.describe()}")
    return EXIT_OK
