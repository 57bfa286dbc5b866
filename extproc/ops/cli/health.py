"""``aigateway health``: probe a running processor's gRPC health."""

from __future__ import annotations

import argparse

from aigateway.extproc.framework.addresses import Address
from aigateway.extproc.ops.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    add_extproc_flag,
    fail,
    seconds,
)

HELP = "probe a running processor's gRPC health (exit 0 when SERVING)"
DESCRIPTION = """\
Ask a running processor's gRPC health service whether it serves ext_proc: exit 0 when
SERVING, 1 otherwise. It dials unix sockets too, which Kubernetes' own gRPC probes
cannot: use it as the exec probe of a sidecar processor."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_extproc_flag(parser, "the processor's ext_proc address")
    parser.add_argument(
        "--live",
        action="store_true",
        help="exit 0 whenever the processor answers, also while it drains (liveness)",
    )
    parser.add_argument(
        "--timeout", type=seconds, default=3.0, metavar="SECONDS", help="how long to wait"
    )
    parser.add_argument(
        "--tls-ca",
        metavar="FILE",
        help="the processor serves TLS signed by this CA (default: plaintext)",
    )


def run(args: argparse.Namespace) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from aigateway.extproc.framework.server import SERVICE_NAME

    target_address: Address = args.extproc_addr
    target = (
        target_address.grpc_target()
        if target_address.is_unix
        else f"{target_address.url_host()}:{target_address.port}"
    )
    try:
        if args.tls_ca:
            with open(args.tls_ca, "rb") as f:
                credentials = grpc.ssl_channel_credentials(f.read())
            channel = grpc.secure_channel(target, credentials)
        else:
            channel = grpc.insecure_channel(target)
    except OSError as exc:
        return fail(f"cannot read {args.tls_ca}: {exc.strerror}", EXIT_USAGE)
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=args.timeout
            )
        except grpc.RpcError as exc:
            return fail(f"{target_address}: {exc.code().name}")
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"{target_address}: {status}")
    serving = reply.status == health_pb2.HealthCheckResponse.SERVING
    return EXIT_OK if serving or args.live else EXIT_FAILED
