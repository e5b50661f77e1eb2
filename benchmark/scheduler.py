"""Scoring on a Dask cluster: ``--scheduler SPEC`` for ``evaluate`` and ``run``.

A spec names where the work goes:

* ``local``: a ``dask.distributed`` LocalCluster on this machine, one single-threaded worker
  process per core (the CPU-bound featurisation and matcher work holds the GIL, so threads would
  not help; one thread per process also keeps torch and BLAS from oversubscribing the cores);
* ``local:N``: the same with N worker processes;
* ``tcp://host:port`` (or another Dask address: ``tls://``, ``ucx://``, ``ws://``, ``wss://``,
  ``inproc://``): a running scheduler, e.g. dask-jobqueue's ``SLURMCluster().scheduler_address``;
* a path to a scheduler file (``dask scheduler --scheduler-file FILE`` writes one; so does
  ``dask-mpi``), read by ``Client(scheduler_file=...)``.

:func:`scheduler_session` opens the Client (and the LocalCluster it asked for, closed again on
exit), makes joblib's default backend Dask (``joblib.parallel_config(backend="dask")``, so every
``joblib.Parallel`` of the scoring code sends its batches to the cluster) and records what it
opened, which :func:`active` returns to code that chooses between local and Dask execution (CHGNet
relaxations) and to the run record.

``dask[distributed]`` is an optional extra: without it a spec is a clear error naming
``pip install 'crystal-gen-benchmark[dask]'``. Remote workers need this project installed in the
same version (they import the functions they run: featurisation, the matcher, CHGNet).
"""

from __future__ import annotations

import logging
import os
import re
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

__all__ = ["SchedulerError", "SchedulerSpec", "SchedulerInfo", "parse_scheduler", "require_distributed", "scheduler_session", "active"]

INSTALL_HINT = "pip install 'crystal-gen-benchmark[dask]'"
#: address schemes Dask's comm layer knows
SCHEMES = ("tcp", "tls", "ucx", "ws", "wss", "inproc")
#: seconds to wait for a scheduler to answer, and for a first worker to join (a batch system may
#: take a while to start the workers of a freshly submitted SLURMCluster)
CONNECT_TIMEOUT_S = 30.0
WORKER_TIMEOUT_S = float(os.environ.get("BENCHMARK_DASK_WORKER_TIMEOUT", "300"))


class SchedulerError(ValueError):
    """A ``--scheduler`` spec that cannot be used (bad spec, missing extra, unreachable scheduler)."""


@dataclass(frozen=True)
class SchedulerSpec:
    """A parsed ``--scheduler`` spec: ``kind`` is "local", "address" or "file"."""

    text: str
    kind: str
    n_workers: int | None = None  # local: worker processes
    address: str | None = None  # address: the scheduler's address
    path: str | None = None  # file: the scheduler file


@dataclass(frozen=True)
class SchedulerInfo:
    """What a session opened (the run record's ``scheduler`` section)."""

    spec: str
    kind: str
    address: str
    n_workers: int
    n_threads: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_LOCAL = re.compile(r"^local(?::(?P<n>.*))?$")
_ADDRESS = re.compile(r"^(?P<scheme>[a-z]+)://(?P<rest>.+)$")


def parse_scheduler(spec: str) -> SchedulerSpec:
    """Parse a ``--scheduler`` spec (see module doc); raises :class:`SchedulerError` with the forms
    a spec can take. A scheduler file must exist (a typo is reported here, not as a connection
    timeout later)."""
    text = (spec or "").strip()
    forms = "local, local:N (N worker processes), tcp://host:port (a running scheduler) or the path of a scheduler file"
    if not text:
        raise SchedulerError(f"empty --scheduler; give {forms}")
    m = _LOCAL.match(text)
    if m:
        n = m.group("n")
        if n is None:
            return SchedulerSpec(text, "local", n_workers=os.cpu_count() or 1)
        if not n.isdigit() or int(n) < 1:
            raise SchedulerError(f"--scheduler {text}: the number of workers must be a positive integer (e.g. local:2)")
        return SchedulerSpec(text, "local", n_workers=int(n))
    m = _ADDRESS.match(text)
    if m:
        if m.group("scheme") not in SCHEMES:
            raise SchedulerError(f"--scheduler {text}: unknown address scheme {m.group('scheme')!r} (Dask knows {', '.join(SCHEMES)})")
        return SchedulerSpec(text, "address", address=text)
    p = Path(text).expanduser()
    if p.is_file():
        return SchedulerSpec(text, "file", path=str(p))
    if p.suffix == ".json" or os.sep in text:
        raise SchedulerError(f"--scheduler {text}: no such scheduler file")
    raise SchedulerError(f"--scheduler {text}: not a scheduler spec; give {forms}")


def require_distributed() -> ModuleType:
    """``dask.distributed``, or a :class:`SchedulerError` saying how to install it."""
    try:
        import distributed
    except ImportError as exc:
        raise SchedulerError(f"--scheduler needs dask.distributed, which is not installed: {INSTALL_HINT} ({exc})") from None
    return distributed


_ACTIVE: list[SchedulerInfo] = []


def active() -> SchedulerInfo | None:
    """The scheduler the innermost :func:`scheduler_session` of this process opened, or None."""
    return _ACTIVE[-1] if _ACTIVE else None


def _connect(parsed: SchedulerSpec, distributed: ModuleType) -> tuple[Any, Any]:
    """(client, cluster we own or None) for a parsed spec."""
    if parsed.kind == "local":
        # no dashboard (it needs bokeh and a free port), and quiet: a worker restart is logged as a warning
        try:
            cluster = distributed.LocalCluster(n_workers=parsed.n_workers, threads_per_worker=1, processes=True,
                                               dashboard_address=None, silence_logs=logging.ERROR)
        except (RuntimeError, OSError) as exc:
            # e.g. a script without `if __name__ == "__main__":`, which spawned worker processes re-run
            raise SchedulerError(f"--scheduler {parsed.text}: the LocalCluster did not start: {type(exc).__name__}: {exc} (a script "
                                 "that opens one must guard its entry point with `if __name__ == \"__main__\":`)") from exc
        try:
            return distributed.Client(cluster), cluster
        except BaseException:
            cluster.close()
            raise
    where = parsed.address if parsed.kind == "address" else f"the scheduler file {parsed.path}"
    try:
        if parsed.kind == "address":
            client = distributed.Client(parsed.address, timeout=CONNECT_TIMEOUT_S)
        else:
            client = distributed.Client(scheduler_file=parsed.path, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError, KeyError) as exc:  # refused, timed out, unreadable file
        raise SchedulerError(f"--scheduler {parsed.text}: cannot connect to the Dask scheduler at {where}: {type(exc).__name__}: {exc}") from exc
    return client, None


@contextmanager
def scheduler_session(spec: str | None) -> Iterator[SchedulerInfo | None]:
    """Run the body on the Dask cluster ``spec`` names (see module doc); ``None`` changes nothing.

    Yields the :class:`SchedulerInfo` (None without a spec). On exit the Client is closed, and the
    LocalCluster if this session started it; a remote scheduler and its workers are left running.
    """
    if spec is None:
        yield None
        return
    parsed = parse_scheduler(spec)
    distributed = require_distributed()
    from joblib import parallel_config

    client, cluster = _connect(parsed, distributed)
    try:
        try:
            client.wait_for_workers(1, timeout=WORKER_TIMEOUT_S)
        except TimeoutError as exc:
            raise SchedulerError(f"--scheduler {parsed.text}: no Dask worker joined the scheduler in {WORKER_TIMEOUT_S:g} s "
                                 "(BENCHMARK_DASK_WORKER_TIMEOUT sets the wait)") from exc
        nthreads = client.nthreads()
        info = SchedulerInfo(spec=parsed.text, kind=parsed.kind, address=str(client.scheduler.address),
                             n_workers=len(nthreads), n_threads=int(sum(nthreads.values())))
        # joblib's dask backend finds this client as the process's default client (Client() sets it)
        with parallel_config(backend="dask", wait_for_workers_timeout=WORKER_TIMEOUT_S):
            _ACTIVE.append(info)
            try:
                yield info
            finally:
                _ACTIVE.pop()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
