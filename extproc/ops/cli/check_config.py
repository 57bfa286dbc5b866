"""``aigateway check-config``: validate a config file and its secrets."""

from __future__ import annotations

import argparse

from aigateway.extproc.gateway import load_config, load_secrets
from aigateway.extproc.gateway.backends import RoutingTable
from aigateway.extproc.gateway.config import GatewayConfig, Model
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
        for line in routing_lines(config, model):
            print(f"  {line}")
    for note in RoutingTable(config, secrets).credential_notes():
        print(f"  {note}")
    limits = config.limits
    if limits.rules:
        login = ""
        if limits.redis is not None and limits.redis.password is not None:
            login = f" as user {limits.redis.username or 'default'}"
        print(f"  limits in {limits.store}{login} (on store error: {limits.on_store_error}):")
        for rule in limits.rules:
            print(f"    {rule.describe()}")
    return EXIT_OK


def routing_lines(config: GatewayConfig, model: Model) -> list[str]:
    """What the gateway does with a model's requests, in words."""
    if not model.several:
        target = model.targets[0]
        backend = config.backend(target.backend)
        upstream = f" as {target.backend_model}" if target.backend_model else ""
        return [f"{model.name} -> {backend.name} ({backend.schema_}, {backend.endpoint}){upstream}"]
    lines = [f"{model.name} -> spread over {len(model.targets)} backends:"]
    tiers = sorted({t.priority for t in model.targets})
    for rank, priority in enumerate(tiers):
        members = [t for t in model.targets if t.priority == priority]
        total = sum(t.weight for t in members)
        when = "first" if rank == 0 else "only once every backend above failed or is left out"
        lines.append(f"  priority {priority} ({when}):")
        for t in members:
            backend = config.backend(t.backend)
            upstream = f" as {model.upstream_name_on(t)}"
            share = (
                f": {100 * t.weight / total:.0f}% of its requests (weight {t.weight})"
                if len(members) > 1
                else ""
            )
            lines.append(
                f"    {backend.name} ({backend.schema_}, {backend.endpoint}){upstream}{share}"
            )
    outliers = [
        o for o in (config.backend(t.backend).outlier for t in model.targets) if o is not None
    ]
    if outliers:
        # One setting per model in Envoy: the strictest (docs/configuration.md).
        lines.append(
            f"  a backend is left out for {max(o.ejection_seconds for o in outliers):g}s after"
            f" {min(o.consecutive_failures for o in outliers)} failed attempts in a row"
        )
    retry = model.retry_policy
    timeout = (
        f", {retry.per_try_timeout_seconds:g}s for each to start answering"
        if retry.per_try_timeout_seconds is not None
        else ""
    )
    lines.append(
        f"  up to {retry.attempts} attempt(s), each on a backend not tried yet, retried on"
        f" {', '.join(retry.on)}{timeout}; never once the answer has started"
    )
    lines.append(
        "  a backend that says its quota is used up (rate-limit headers, 429 retry-after)"
        " rests until its reset while another can serve"
    )
    return lines
