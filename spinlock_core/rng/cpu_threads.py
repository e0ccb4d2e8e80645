"""Split a CPU kernel's jobs across threads: the ``fill_*`` kernels release the GIL.

Plain Python threads rather than numba's ``parallel=True``: without TBB numba falls back to its
GNU OpenMP layer, whose spinning workers contend with torch's own OpenMP pool (measured on the
2-core CI machine under load: 15 ms instead of 3.4 ms serial for a [5, 128, 64, 64] uniform
draw), and its ``workqueue`` layer is process-wide and aborts the process when two threads launch
kernels at once. A thread pool has neither problem. The thread count follows
``torch.get_num_threads()``, so limiting torch's threads limits these too.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import torch

__all__ = ["MIN_JOBS_PER_THREAD", "run_jobs"]

#: Below this many jobs (of 4 * CHUNK_BLOCKS = 4096 elements) per thread, threads cost more than
#: they save.
MIN_JOBS_PER_THREAD = 4

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_key: tuple[int, int] | None = None


def _executor(workers: int) -> ThreadPoolExecutor:
    """The process's pool with ``workers`` threads (rebuilt after a fork: a forked child does not
    inherit the parent's threads)."""
    global _pool, _pool_key
    key = (os.getpid(), workers)
    with _lock:
        if _pool_key != key:
            if _pool is not None and _pool_key[0] == os.getpid():
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="spinlock-rng")
            _pool_key = key
        return _pool


def run_jobs(fn, jobs: int, *args) -> None:
    """Run ``fn(*args, job0, job1)`` over ``[0, jobs)`` in contiguous slices, one per thread
    (the calling thread takes the first)."""
    threads = max(1, min(torch.get_num_threads(), jobs // MIN_JOBS_PER_THREAD))
    if threads == 1:
        fn(*args, 0, jobs)
        return
    bounds = [jobs * i // threads for i in range(threads + 1)]
    pool = _executor(threads - 1)
    futures = [pool.submit(fn, *args, bounds[i], bounds[i + 1]) for i in range(1, threads)]
    fn(*args, bounds[0], bounds[1])
    for f in futures:
        f.result()
