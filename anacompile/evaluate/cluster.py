"""``evaluate --scheduler dask://HOST:PORT``: the same (chip, t) tasks on an existing Dask cluster.

The evaluation's unit of work is the one the worker processes of ``--workers`` run
(:func:`anacompile.evaluate.monte_carlo._chips_list`: program a chunk of chips, measure them at every time,
many (chip, t) pairs per onnxruntime call). Here each chunk is submitted to a ``dask.distributed``
cluster instead of a local process pool, with the same picklable job; a chip's numbers depend only on its
seed, so the result is the local run's, to the bit. Nothing of the cluster is built here: the scheduler and
its workers are the user's (``dask scheduler`` and ``dask worker``, a ``LocalCluster``, a ``dask-jobqueue``
or Kubernetes deployment), and every worker must have anacompile installed and read the compiled model and
the data at the same paths as the client (a shared file system); built-in data sets (``digits``) ship with
anacompile.

Needs the optional extra: ``pip install 'anacompile[cluster]'`` (``dask[distributed]``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from anacompile.errors import AnacompileError, ConfigError

__all__ = ["SCHEME", "ClusterPool", "connect"]

logger = logging.getLogger(__name__)
SCHEME = "dask://"
"""Prefix of a scheduler address on the command line: ``dask://HOST:PORT`` (Dask's own ``tcp://`` works too)."""
CONNECT_TIMEOUT_S = 10


def _distributed():
    try:
        import distributed
    except ImportError as err:
        raise ConfigError(
            "--scheduler needs dask.distributed: pip install 'anacompile[cluster]' (dask[distributed])."
        ) from err
    return distributed


def connect(scheduler: Any) -> tuple[Any, bool]:
    """A ``distributed.Client`` for ``scheduler`` and whether this call opened it (then it is closed after).

    Args:
        scheduler: ``"dask://HOST:PORT"`` (or ``"tcp://HOST:PORT"``), or an existing ``distributed.Client``,
            used as it is and left open.

    Raises:
        ConfigError: not a scheduler address, no scheduler answers there, or dask.distributed is missing.
    """
    distributed = _distributed()
    if isinstance(scheduler, distributed.Client):
        return scheduler, False
    if not isinstance(scheduler, str) or not scheduler.startswith((SCHEME, "tcp://", "tls://")):
        raise ConfigError(
            f"--scheduler {scheduler!r}: give the address of a running Dask scheduler, dask://HOST:PORT "
            "(or a distributed.Client in Python)."
        )
    address = "tcp://" + scheduler[len(SCHEME) :] if scheduler.startswith(SCHEME) else scheduler
    try:
        return distributed.Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False), True
    except (OSError, TimeoutError) as err:
        raise ConfigError(
            f"--scheduler {scheduler}: no Dask scheduler answered within {CONNECT_TIMEOUT_S} s ({type(err).__name__}); "
            "start one (dask scheduler; dask worker ADDRESS) or check the address."
        ) from err


class ClusterPool:
    """Chunks of chips submitted to a Dask cluster, the tasks of the local process pool, collected as they finish.

    Args:
        scheduler: see :func:`connect`.
        task: the picklable ``task(job, chips) -> [(chip, row), ...]`` (the local pool's task).
        job: its picklable job.
        chips: the chips to run, split as the local pool splits them: a few chunks per worker thread of the
            cluster, at most ``max_chunk`` chips each (a chunk's (chip, t) pairs share onnxruntime calls).
        max_chunk: the local pool's largest chunk.
    """

    def __init__(
        self, scheduler: Any, task: Callable[[Any, list[int]], Any], job: Any, chips: list[int], max_chunk: int
    ) -> None:
        self.client, self._owned = connect(scheduler)
        workers = self.client.scheduler_info().get("workers", {})
        if not workers:
            logger.warning("the Dask scheduler has no workers yet; tasks wait until one joins")
        threads = max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))
        size = max(1, min(max_chunk, -(-len(chips) // (2 * threads))))
        chunks = [chips[i : i + size] for i in range(0, len(chips), size)]
        run = uuid.uuid4().hex[:12]  # a task of its own even when the same job and chips ran before
        self.futures = {
            self.client.submit(task, job, chunk, pure=False, key=f"anacompile-chips-{chunk[0]}-{run}"): chunk
            for chunk in chunks
        }

    def results(self) -> Iterator[tuple[int, Any]]:
        """Yield (chip, row) as the cluster finishes chunks; a task's AnacompileError is re-raised as is."""
        distributed = _distributed()
        for future in distributed.as_completed(list(self.futures), loop=self.client.loop):
            chunk = self.futures[future]
            try:
                rows = future.result()
            except AnacompileError:
                raise
            except Exception as err:  # a worker died or could not run the task
                first = str(err).strip().splitlines()[0] if str(err).strip() else ""
                raise AnacompileError(
                    f"chips {chunk[0]}-{chunk[-1]} failed on the Dask cluster ({type(err).__name__}: {first}); "
                    "every worker needs anacompile and the model and data at the client's paths. The rows of "
                    "the chips finished so far are in the --csv file, if one was given: continue with --resume FILE."
                ) from err
            yield from rows

    def shutdown(self, cancel_futures: bool = True) -> None:
        """Cancel what is left and close the client if this pool opened it."""
        if cancel_futures:
            self.client.cancel(list(self.futures))
        if self._owned:
            self.client.close()
