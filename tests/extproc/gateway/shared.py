"""What the gateway's processor tests share: the servicer Envoy talks to, built from a
config the way the app builds it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aigateway.extproc.framework.server import ExternalProcessorServicer
from aigateway.extproc.gateway.app import build_router
from aigateway.extproc.gateway.backends import RoutingTable
from aigateway.extproc.gateway.config import ResolvedSecrets, parse_config


def gateway_servicer(config: dict[str, Any]) -> ExternalProcessorServicer:
    """The gateway's servicer for ``config`` (secrets given inline, so no folder)."""
    cfg = parse_config(config)
    return ExternalProcessorServicer(build_router(RoutingTable(cfg, ResolvedSecrets(cfg, Path()))))
