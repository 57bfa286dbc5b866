"""``aigateway envoy-config``: print the Envoy bootstrap for a config."""

from __future__ import annotations

import argparse
import os
import sys

import yaml

from aigateway.extproc.framework.addresses import Address
from aigateway.extproc.gateway import DEFAULT_EXTPROC_ADDR, load_config
from aigateway.extproc.ops.cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    add_admin_flag,
    add_config_flag,
    add_listen_flag,
    address,
    fail,
    worker_count,
)
from aigateway.extproc.ops.envoy_bootstrap import EnvoyOptions, ExtprocTls, build_bootstrap
from aigateway.extproc.ops.workers import (
    counter_address,
    large_body_address,
    worker_addresses,
)

HELP = "print the Envoy bootstrap for a config (YAML)"
DESCRIPTION = """\
Print a complete Envoy bootstrap (YAML) for the config: a listener with the ext_proc
filter before the router, one route and cluster per backend, and the processor's
cluster. Save it to a file ending in .yaml (Envoy picks its parser from the file
name) and run `envoy -c envoy.yaml`."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_flag(parser)
    add_listen_flag(parser)
    parser.add_argument(
        "--extproc-addr",
        type=address,
        action="append",
        metavar="ADDR",
        help=f"where the processor listens (default: {DEFAULT_EXTPROC_ADDR});"
        " repeat for several processes",
    )
    add_admin_flag(parser)
    parser.add_argument(
        "--workers",
        type=worker_count,
        default=None,
        metavar="N",
        help="each --extproc-addr stands for `serve --workers N`: N endpoints on consecutive"
        " ports, the parent that counts requests Envoy answered without them (port + N),"
        " and the large-body worker (port + N + 1) that requests with a body of 1 MiB or"
        " more (or of unknown size) go to, the N workers standing in while it is down",
    )
    parser.add_argument(
        "--no-access-log",
        action="store_true",
        help="leave out the JSON access log on stdout",
    )
    parser.add_argument(
        "--extproc-tls-ca",
        metavar="FILE",
        help="connect to the processor over TLS, trusting this CA (for serve --tls-cert)",
    )
    parser.add_argument(
        "--extproc-tls-sni",
        metavar="NAME",
        help="SNI to send and DNS name to require of the processor's certificate",
    )
    parser.add_argument(
        "--extproc-tls-cert",
        metavar="FILE",
        help="client certificate for a processor that requires one (serve --tls-client-ca)",
    )
    parser.add_argument(
        "--extproc-tls-key", metavar="FILE", help="the private key for --extproc-tls-cert"
    )
    parser.add_argument(
        "--backend-ca",
        metavar="FILE",
        help="CA bundle that signs the https backends' certificates (default: the system's)",
    )


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    given = args.extproc_addr or [Address.parse(DEFAULT_EXTPROC_ADDR)]
    try:
        extproc = [
            worker for address in given for worker in worker_addresses(address, args.workers or 1)
        ]
        counters: tuple[Address, ...] = ()
        large_body: tuple[Address, ...] = ()
        if args.workers is not None:
            counters = tuple(counter_address(address, args.workers) for address in given)
            large_body = tuple(large_body_address(address, args.workers) for address in given)
    except ValueError as exc:
        return fail(str(exc), EXIT_USAGE)
    if (args.extproc_tls_cert is None) != (args.extproc_tls_key is None):
        return fail("--extproc-tls-cert and --extproc-tls-key go together", EXIT_USAGE)
    tls_flags = (args.extproc_tls_sni, args.extproc_tls_cert)
    if args.extproc_tls_ca is None and any(f is not None for f in tls_flags):
        return fail("the --extproc-tls-* flags need --extproc-tls-ca", EXIT_USAGE)
    tls = None
    if args.extproc_tls_ca is not None:
        tls = ExtprocTls(
            ca=os.path.abspath(args.extproc_tls_ca),
            sni=args.extproc_tls_sni,
            cert=os.path.abspath(args.extproc_tls_cert) if args.extproc_tls_cert else None,
            key=os.path.abspath(args.extproc_tls_key) if args.extproc_tls_key else None,
        )
    options = EnvoyOptions(
        listen=args.listen,
        extproc=extproc,
        admin=args.admin_addr,
        access_log=not args.no_access_log,
        extproc_tls=tls,
        unrecorded=counters,
        large_body=large_body,
        ca_bundle=os.path.abspath(args.backend_ca) if args.backend_ca else None,
    )
    sys.stdout.write(yaml.safe_dump(build_bootstrap(config, options), sort_keys=False))
    return EXIT_OK
