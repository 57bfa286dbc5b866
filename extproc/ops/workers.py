"""``aigateway serve --workers N``: N processor processes behind one Envoy.

One Python process runs on one core. With ``--workers N`` the parent starts N
``aigateway serve`` processes; worker ``i`` listens for ext_proc on port ``PORT+i`` (or
``PATH.i`` for ``unix:PATH``) and serves its own ``/metrics`` on metrics port ``+i``.
Envoy balances ext_proc streams over the N endpoints (``aigateway envoy-config --workers
N`` lists them). Each request is one stream, handled and counted by exactly one worker,
so summing a metric over the workers' ``/metrics`` (Prometheus does it in the query) is
exact; there is no cross-process aggregation.

One more worker, the large-body worker, runs the same command on the ext_proc port + N +
1 (``PATH.{N+1}``) with its metrics on the metrics port + N + 1: Envoy sends it every
request whose body may be large (``LARGE_BODY_BYTES`` or more, or of unknown size), so
receiving and parsing those never holds up the small requests on the other workers
(docs/reliability.md, "Large bodies"). Scrape every worker::

    scrape_configs:
      - job_name: aigateway
        static_configs:  # N=2: the workers, the parent (below), the large-body worker
          - targets: ["gateway-host:9190", "gateway-host:9191", "gateway-host:9192",
                      "gateway-host:9193"]

and sum across them (``sum by (model) (rate(aigateway_requests_total[5m]))`` already
does, the ``instance`` label tells them apart).

The parent also counts the requests Envoy answers without a worker (none reachable, or
the one holding the request died): Envoy's log of exactly those comes to the parent's
:class:`~aigateway.extproc.gateway.app.UnrecordedCounter` on the ext_proc port + N
(``PATH.N``), which serves them on its own ``/metrics`` on the metrics port + N; scrape
it with the workers (docs/architecture.md, "Requests no processor recorded").

The parent supervises every worker, the large-body worker too: it prints one ``ready``
line once every worker accepts, forwards SIGINT/SIGTERM (each worker drains its streams,
then exits), and exits 0 when all have.
A worker that exits on its own once the group is ready (crash, OOM kill) is reported and
restarted on its own addresses, after a backoff that doubles from
``RESTART_BACKOFF_SECONDS`` up to ``MAX_RESTART_BACKOFF_SECONDS`` while it keeps dying
young (within ``HEALTHY_RUN_SECONDS``); the other workers keep serving meanwhile. Only the
streams the dead worker held fail. A worker that exits before the group was ever ready
(a bad config, a port taken) stops the group with exit code 1, as a crash loop should.

A worker is recycled (SIGTERM: it drains its streams, then a fresh one takes its place,
one worker at a time) once it has counted ``--max-requests`` requests (read from its
``/metrics``) or its RSS passes ``--max-rss-mb``, both checked every
``RECYCLE_CHECK_SECONDS``. Envoy sends a draining or restarting worker no new streams:
it health-checks each worker and retries a refused stream on another
(``envoy_bootstrap.py``), so recycling fails no request.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aigateway.extproc.framework.addresses import Address
from aigateway.extproc.gateway.app import (
    ServeOptions,
    StartupError,
    UnrecordedCounter,
    run_event_loop,
)
from aigateway.extproc.gateway.config import GatewayConfig
from aigateway.extproc.gateway.limits.sqlite_store import STORE_FILE_ENV, create_store_file
from aigateway.extproc.ops.envoy_process import die_with_parent
from aigateway.extproc.ops.logs import bind_explained

READY_PREFIX = "aigateway ready: "
#: After the drain timeout, how long workers get to exit before they are killed.
EXIT_GRACE_SECONDS = 5.0
#: The first delay before restarting a worker that exited; doubled while it dies young.
RESTART_BACKOFF_SECONDS = 0.5
MAX_RESTART_BACKOFF_SECONDS = 30.0
#: A worker that ran this long before exiting restarts after the first delay again.
HEALTHY_RUN_SECONDS = 60.0
#: How often the parent reads each worker's request count and RSS (recycling).
RECYCLE_CHECK_SECONDS = 1.0
#: Added to the large-body worker's niceness: when the cores are busy the processes
#: serving small requests get them first (docs/reliability.md, "Large bodies").
LARGE_BODY_NICENESS = 10


@dataclass(slots=True, frozen=True)
class Recycle:
    """When to replace a worker; ``None`` turns a limit off."""

    max_requests: int | None = None
    max_rss_mb: int | None = None

    @property
    def enabled(self) -> bool:
        return self.max_requests is not None or self.max_rss_mb is not None


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` in MiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def requests_counted(metrics_url: str) -> float:
    """``aigateway_requests_total`` over its series, from one worker's ``/metrics``."""
    try:
        # An http URL built from our own --metrics-addr.
        with urllib.request.urlopen(metrics_url, timeout=2) as resp:  # noqa: S310
            text = resp.read().decode()
    except OSError:
        return 0.0
    return sum(
        float(line.rpartition(" ")[2])
        for line in text.splitlines()
        if line.startswith("aigateway_requests_total{")
    )


def counter_address(address: Address, workers: int) -> Address:
    """Where the parent of ``workers`` workers from ``address`` takes Envoy's log of
    requests no processor recorded (or serves its metrics): the next address after the
    workers' (port + N, ``PATH.N``; port 0 stays 0). Raises ``ValueError`` past 65535."""
    return worker_addresses(address, workers + 1)[-1]


def large_body_address(address: Address, workers: int) -> Address:
    """Where the large-body worker of ``workers`` workers from ``address`` listens (or
    serves its metrics): the address after the parent's (port + N + 1, ``PATH.{N+1}``;
    port 0 stays 0). Raises ``ValueError`` past 65535."""
    return worker_addresses(address, workers + 2)[-1]


def worker_addresses(address: Address, workers: int) -> list[Address]:
    """The address of each of ``workers`` workers: consecutive ports from ``address``'s
    (``PATH.0``, ``PATH.1``... for a unix socket). Port 0 (pick any) stays 0 for every
    worker. Raises ``ValueError`` when the ports would run past 65535."""
    if workers < 1:
        raise ValueError("the number of workers must be at least 1")
    if workers == 1:
        return [address]
    if address.unix_path is not None:
        return [Address(unix_path=f"{address.unix_path}.{i}") for i in range(workers)]
    if address.port == 0:
        return [address] * workers
    if address.port + workers - 1 > 65535:
        raise ValueError(f"{address}: {workers} consecutive ports would run past 65535")
    return [Address(address.host, address.port + i) for i in range(workers)]


@dataclass(slots=True)
class _Worker:
    index: int
    process: asyncio.subprocess.Process
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    ready_text: str = ""

    async def forward_stderr(self) -> None:
        """Copies the worker's stderr to ours, keeping its ``ready`` line for the summary."""
        stream = self.process.stderr
        assert stream is not None
        async for raw in stream:
            line = raw.decode(errors="replace")
            if not self.ready.is_set() and line.startswith(READY_PREFIX):
                self.ready_text = line[len(READY_PREFIX) :].strip()
                self.ready.set()
                continue
            sys.stderr.write(line)
            sys.stderr.flush()


class Supervisor:
    """Runs one ``aigateway serve`` process per command line until a stop signal,
    restarting any that exits; see the module docstring."""

    def __init__(
        self,
        commands: Sequence[Sequence[str]],
        *,
        drain_timeout: float,
        recycle: Recycle = Recycle(),
        metrics_urls: Sequence[str] = (),
        counter: UnrecordedCounter | None = None,
        large_body: bool = False,
    ) -> None:
        self.commands = [list(c) for c in commands]
        #: The last command is the large-body worker's.
        self.large_body = large_body
        #: Counts what Envoy answered that no worker recorded; outlives every worker.
        self.counter = counter
        self.drain_timeout = drain_timeout
        self.recycle = recycle
        self.metrics_urls = list(metrics_urls)
        self._recycling = asyncio.Lock()  # one worker at a time, the others keep serving
        self.workers: list[_Worker] = []
        self._stderr_tasks: list[asyncio.Task[None]] = []
        #: Times a worker was restarted, by index (for tests and the log).
        self.restarts: list[int] = [0] * len(self.commands)

    async def _spawn(self, index: int) -> _Worker:
        process = await asyncio.create_subprocess_exec(
            *self.commands[index],
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=_large_body_child if self._is_large_body(index) else die_with_parent,
        )
        worker = _Worker(index, process)
        self._stderr_tasks.append(asyncio.create_task(worker.forward_stderr()))
        return worker

    async def run(self) -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        keepers: list[asyncio.Task[None]] = []
        if self.counter is not None:
            await self.counter.start()
        try:
            for i in range(len(self.commands)):
                self.workers.append(await self._spawn(i))
            exited = asyncio.create_task(self._first_exit())
            stopping = asyncio.create_task(stop.wait())
            all_ready = asyncio.create_task(self._all_ready())
            await asyncio.wait({exited, stopping, all_ready}, return_when=asyncio.FIRST_COMPLETED)
            ready = all_ready.done() and not exited.done() and not stopping.done()
            all_ready.cancel()
            if not ready:  # stopped, or a worker died, before the group was ever ready
                exited.cancel()
                stopping.cancel()
                if stop.is_set():
                    codes = await self._stop_all()
                    return 0 if all(code == 0 for code in codes) else 1
                self._report_exit(exited.result(), "stopping the other workers")
                await self._stop_all()
                return 1
            exited.cancel()
            print(self.ready_line(), file=sys.stderr, flush=True)
            keepers = [asyncio.create_task(self._keep(w.index, stop)) for w in self.workers]
            await stopping
            for keeper in keepers:
                keeper.cancel()
            await asyncio.gather(*keepers, return_exceptions=True)
            codes = await self._stop_all()
            return 0 if all(code == 0 for code in codes) else 1
        finally:
            for keeper in keepers:
                keeper.cancel()
            for worker in self.workers:  # never leave a worker behind
                if worker.process.returncode is None:
                    worker.process.kill()
                    await worker.process.wait()
            if self._stderr_tasks:  # the rest of each worker's stderr
                await asyncio.wait(self._stderr_tasks, timeout=EXIT_GRACE_SECONDS)
            if self.counter is not None:  # last: Envoy logs what it answers until then
                await self.counter.stop()

    async def _keep(self, index: int, stop: asyncio.Event) -> None:
        """Restarts worker ``index`` whenever it exits, with backoff, until ``stop``."""
        loop = asyncio.get_running_loop()
        backoff = RESTART_BACKOFF_SECONDS
        started = loop.time()
        while True:
            if await self._until_exit_or_recycled(index):
                async with self._recycling:
                    await self._drain(self.workers[index])
                    if stop.is_set():
                        return
                    fresh = self.workers[index] = await self._spawn(index)
                    # Serving before the next worker may go (or dead: then restarted below).
                    ready = asyncio.create_task(fresh.ready.wait())
                    gone = asyncio.create_task(fresh.process.wait())
                    await asyncio.wait({ready, gone}, return_when=asyncio.FIRST_COMPLETED)
                    ready.cancel()
                    gone.cancel()
                self.restarts[index] += 1
                started = loop.time()
                continue
            if stop.is_set():
                return
            if loop.time() - started >= HEALTHY_RUN_SECONDS:
                backoff = RESTART_BACKOFF_SECONDS
            self._report_exit(self.workers[index], f"restarting it in {backoff:g}s")
            try:
                await asyncio.wait_for(stop.wait(), backoff)
                return
            except TimeoutError:
                pass
            backoff = min(backoff * 2, MAX_RESTART_BACKOFF_SECONDS)
            self.workers[index] = await self._spawn(index)
            self.restarts[index] += 1
            started = loop.time()

    async def _until_exit_or_recycled(self, index: int) -> bool:
        """Waits for worker ``index`` to exit (``False``) or to pass a recycling limit
        (``True``, the worker still running)."""
        process = self.workers[index].process
        if not self.recycle.enabled:
            await process.wait()
            return False
        exited = asyncio.create_task(process.wait())
        while True:
            await asyncio.wait({exited}, timeout=RECYCLE_CHECK_SECONDS)
            if exited.done():
                return False
            reason = await asyncio.to_thread(self._recycle_reason, index, process.pid)
            if reason:
                exited.cancel()
                print(
                    f"aigateway: recycling {self.worker_name(index)} (pid {process.pid}): {reason}",
                    file=sys.stderr,
                    flush=True,
                )
                return True

    def _recycle_reason(self, index: int, pid: int) -> str:
        limit = self.recycle
        if limit.max_rss_mb is not None and (rss := rss_mb(pid)) > limit.max_rss_mb:
            return f"RSS {rss:.0f} MiB over --max-rss-mb {limit.max_rss_mb}"
        if limit.max_requests is not None and index < len(self.metrics_urls):
            counted = requests_counted(self.metrics_urls[index])
            if counted >= limit.max_requests:
                return f"{counted:.0f} requests, --max-requests {limit.max_requests}"
        return ""

    async def _drain(self, worker: _Worker) -> None:
        """SIGTERM: the worker turns NOT_SERVING, finishes its streams and exits."""
        try:
            worker.process.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            await asyncio.wait_for(worker.process.wait(), self.drain_timeout + EXIT_GRACE_SECONDS)
        except TimeoutError:
            worker.process.kill()
            await worker.process.wait()

    def _is_large_body(self, index: int) -> bool:
        return self.large_body and index == len(self.commands) - 1

    def worker_name(self, index: int) -> str:
        """How the log names worker ``index``."""
        if self._is_large_body(index):
            return "large-body worker"
        return f"worker {index}"

    def _report_exit(self, worker: _Worker, then: str) -> None:
        print(
            f"aigateway: {self.worker_name(worker.index)} (pid {worker.process.pid}) exited"
            f" with code {worker.process.returncode}; {then}",
            file=sys.stderr,
            flush=True,
        )

    async def _all_ready(self) -> None:
        for worker in self.workers:
            await worker.ready.wait()

    async def _first_exit(self) -> _Worker:
        waits = {asyncio.create_task(w.process.wait()): w for w in self.workers}
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            return waits[next(iter(done))]
        finally:
            for task in waits:
                task.cancel()

    async def _stop_all(self) -> list[int]:
        """SIGTERM to every worker still running; each drains, then exits."""
        for worker in self.workers:
            if worker.process.returncode is None:
                try:
                    worker.process.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        waits = [asyncio.create_task(w.process.wait()) for w in self.workers]
        await asyncio.wait(waits, timeout=self.drain_timeout + EXIT_GRACE_SECONDS)
        for worker in self.workers:
            if worker.process.returncode is None:
                worker.process.kill()
        return list(await asyncio.gather(*waits))

    def ready_line(self) -> str:
        parts = "; ".join(f"{self.worker_name(w.index)}: {w.ready_text}" for w in self.workers)
        counter = self.counter
        if counter is not None:
            where = counter.options.extproc
            at = str(where) if where.is_unix else f"{where.url_host()}:{counter.port}"
            parts += f"; requests no worker recorded: Envoy's log on {at}"
            if counter.metrics_port is not None and counter.options.metrics is not None:
                host = counter.options.metrics.url_host()
                parts += f", metrics on http://{host}:{counter.metrics_port}/metrics"
        workers = len(self.workers) - int(self.large_body)
        large = " and a large-body worker" if self.large_body else ""
        return f"{READY_PREFIX}{workers} workers{large}, {parts}"


def _large_body_child() -> None:
    """``preexec_fn`` of the large-body worker."""
    die_with_parent()
    os.nice(LARGE_BODY_NICENESS)


def without_flag(argv: Sequence[str], flag: str) -> list[str]:
    """``argv`` less every ``FLAG VALUE`` and ``FLAG=VALUE`` of ``flag``."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == flag:
            skip = True
        elif not arg.startswith(flag + "="):
            out.append(arg)
    return out


def worker_commands(
    argv: Sequence[str], extprocs: Sequence[Address], metrics: Sequence[Address]
) -> list[list[str]]:
    """Each worker runs the parent's own ``serve`` arguments without ``--workers``, with
    its own addresses last (the last of a repeated flag wins)."""
    common = [sys.executable, "-m", "aigateway", *without_flag(argv, "--workers")]
    return [
        [*common, "--extproc-addr", str(e), "--metrics-addr", str(m)]
        for e, m in zip(extprocs, metrics, strict=True)
    ]


def serve_workers(
    args: argparse.Namespace, config: GatewayConfig, *, shared_limits: bool = False
) -> int:
    """``serve --workers N``: the config and wrappers were checked by the caller once;
    each worker is the same command with its own addresses, and this parent counts the
    requests no worker recorded (``config`` gives its labels). ``shared_limits``: the
    config's budgets live in the ``memory`` store, a file this parent makes and every
    worker opens (named in their environment), removed when they have all exited."""
    if shared_limits:
        with tempfile.TemporaryDirectory(prefix="aigateway-limits-") as folder:
            path = os.path.join(folder, "limits.sqlite3")
            create_store_file(path)
            os.environ[STORE_FILE_ENV] = path
            return _serve_workers(args, config)
    return _serve_workers(args, config)


def _serve_workers(args: argparse.Namespace, config: GatewayConfig) -> int:
    extproc: Address = args.extproc_addr
    if not extproc.is_unix and extproc.port == 0:
        print("aigateway: --workers needs a fixed --extproc-addr port", file=sys.stderr)
        return 2
    try:
        # The large-body worker last (docs/reliability.md, "Large bodies").
        extprocs = [
            *worker_addresses(extproc, args.workers),
            large_body_address(extproc, args.workers),
        ]
        metrics = [
            *worker_addresses(args.metrics_addr, args.workers),
            large_body_address(args.metrics_addr, args.workers),
        ]
        counter_options = ServeOptions(
            extproc=counter_address(extproc, args.workers),
            metrics=counter_address(args.metrics_addr, args.workers),
            allow_remote_plaintext=args.allow_remote_plaintext,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            tls_client_ca=args.tls_client_ca,
            binder=bind_explained,
        )
    except ValueError as exc:
        print(f"aigateway: {exc}", file=sys.stderr)
        return 2
    commands = worker_commands(args.argv, extprocs, metrics)
    code = 1

    async def run() -> None:
        nonlocal code
        supervisor = Supervisor(
            commands,
            drain_timeout=args.drain_timeout,
            recycle=Recycle(args.max_requests, args.max_rss_mb),
            metrics_urls=[f"http://{m.url_host()}:{m.port}/metrics" for m in metrics],
            counter=UnrecordedCounter(config, counter_options),
            large_body=True,
        )
        try:
            code = await supervisor.run()
        except StartupError as exc:
            print(f"aigateway: {exc}", file=sys.stderr)

    run_event_loop(run())
    return code
