"""Kubernetes exec probe for the processor's gRPC health service on a unix socket.

Kubernetes' own ``grpc`` probes dial TCP only, and the processor in gateway.yaml listens
on a unix socket shared with Envoy. Mounted from the ``aigateway-config`` ConfigMap::

    python /etc/aigateway/healthcheck.py unix:/sockets/extproc.sock ready
    python /etc/aigateway/healthcheck.py unix:/sockets/extproc.sock live

``ready`` exits 0 only while the service is SERVING (it turns NOT_SERVING when the
processor starts draining on SIGTERM, so the pod leaves the Service first); ``live``
exits 0 whenever the processor answers at all, so draining is not mistaken for a hang.
"""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor"


def main(target: str, mode: str) -> int:
    try:
        with grpc.insecure_channel(target) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=SERVICE), timeout=3
            )
    except grpc.RpcError as exc:
        print(f"{target}: {exc.code().name}", file=sys.stderr)
        return 1
    if mode == "live" or reply.status == health_pb2.HealthCheckResponse.SERVING:
        return 0
    print(f"{target}: {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}")
    return 1


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[2] not in ("ready", "live"):
        sys.exit(f"usage: {sys.argv[0]} unix:/path/to.sock ready|live")
    sys.exit(main(sys.argv[1], sys.argv[2]))
