"""Run decoding jobs on several threads: one shared pool, small jobs inline, errors in job order.

The chunks of a dcf file decode independently (spec §4.4), and the work inside a chunk happens in
code that releases the GIL: the Numba kernels (compiled ``nogil=True``), the CRC-32 (zlib or ISA-L) and
libzstd (for buffers of a few KiB and more), numpy copies. So plain threads use every core without
the cost of processes, and each job writes straight into its own slice of the output.

The number of threads is, in order: the ``threads`` argument a caller passes, the environment
variable ``DCFORMAT_THREADS``, or the CPUs this process may run on. ``threads=1`` decodes serially
on the calling thread, with no pool.

Stopping: a Ctrl-C reaches the main thread only. :func:`imap_ordered` then calls
:func:`request_stop`, and long jobs (the packer's error-budget searches) call :func:`check_stop`
between their steps, which raises :class:`Stopped` (a ``KeyboardInterrupt``) in the worker, so that
the pool drains within a step instead of finishing every running search. A job that has not started
when the stop comes does not start (it raises :class:`Stopped` at once), and an interrupted call
cancels the jobs still queued. The commands call :func:`request_stop` from their SIGINT handler and
:func:`clear_stop` when they return. By default an interrupted call waits for its running jobs; a
command that ends the process after a Ctrl-C anyway sets :func:`set_stop_wait`, so that a job inside
one long compiled step (a sort, a kernel, an import) cannot hold the exit: the call returns once the
bound has passed, the job left running (:func:`busy` counts such jobs).
"""
from __future__ import annotations

import collections
import concurrent.futures
import os
import threading
from concurrent.futures import ThreadPoolExecutor

INLINE_COST = 1 << 17
"""Jobs that cost less than this (bytes written plus bytes read, roughly) run on the calling thread:
handing them to the pool would cost more than it saves."""
SERIAL_COST = 1 << 21
"""Below this total cost every job runs on the calling thread: for a small file, fixed costs per
stream (Python, holding the GIL) outweigh what a second core brings."""

_stop = threading.Event()


class Stopped(KeyboardInterrupt):
    """Raised by :func:`check_stop` in a job after :func:`request_stop`."""


def request_stop() -> None:
    """Ask running jobs to stop at their next :func:`check_stop` (Ctrl-C)."""
    _stop.set()


def clear_stop() -> None:
    """Let jobs run again (after the interrupted work has been cleaned up)."""
    _stop.clear()


def stopping() -> bool:
    return _stop.is_set()


def check_stop() -> None:
    """Raise :class:`Stopped` if a stop was requested: call between the steps of a long job."""
    if _stop.is_set():
        raise Stopped()


_stop_wait: float | None = None
_busy = 0
_busy_lock = threading.Lock()


def set_stop_wait(seconds: float | None) -> float | None:
    """How long an interrupted :func:`run_jobs` or :func:`imap_ordered` waits for its running jobs
    before it raises anyway (``None``: until they end, the default); returns the previous value.
    Only for a process that ends after the interrupt: a job left running keeps running."""
    global _stop_wait
    previous, _stop_wait = _stop_wait, seconds
    return previous


def busy() -> int:
    """How many jobs are running on worker threads (after an interrupt: those left running)."""
    return _busy


def _tracked(function):
    """``function`` as a pool job: not started after a stop request, counted while it runs."""
    def job(*args):
        global _busy
        check_stop()
        with _busy_lock:
            _busy += 1
        try:
            return function(*args)
        finally:
            with _busy_lock:
                _busy -= 1
    return job


def _drain(futures) -> bool:
    """After an interrupt: cancel what has not started, wait for the rest (within :func:`set_stop_wait`'s
    bound); whether every job has ended."""
    futures = list(futures)
    for future in futures:
        future.cancel()
    _, running = concurrent.futures.wait(futures, timeout=_stop_wait)
    return not running


_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def default_threads() -> int:
    """``DCFORMAT_THREADS`` if set (at least 1), else the CPUs this process may run on."""
    value = os.environ.get("DCFORMAT_THREADS")
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            pass
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def resolve_threads(threads: int | None) -> int:
    if threads is None:
        return default_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer or None, not {threads!r}")
    return threads


def _shared_pool(size: int) -> ThreadPoolExecutor:
    """One pool for the process, replaced by a larger one when a caller asks for more threads.

    A replaced pool is not shut down (another caller may be about to submit to it); its idle
    threads cost nothing."""
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < size:
            _pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="dcformat")
            _pool_size = size
        return _pool


def run_jobs(jobs, threads: int | None = None) -> None:
    """Run ``jobs``, a list of ``(cost, callable)``; return when every one has finished.

    With more than one thread and a total cost of at least ``SERIAL_COST``, jobs of cost
    ``>= INLINE_COST`` go to the shared pool (largest first, which balances the load) while the
    calling thread runs the small ones. If jobs raise, the exception of the first failing job
    *in list order* is raised, as a serial loop would raise it: once job ``i`` has failed, the
    jobs after ``i`` that have not started are cancelled, those before it still run, and the call
    returns only when no job is running.
    """
    threads = resolve_threads(threads)
    big = [job for job in jobs if job[0] >= INLINE_COST] if threads > 1 else []
    if len(big) < 2 or sum(job[0] for job in jobs) < SERIAL_COST:  # a pool would only add overhead
        for _, job in jobs:
            check_stop()  # on a worker thread (a search encoding a candidate) Ctrl-C is seen here
            job()
        return
    order = {id(job): i for i, job in enumerate(jobs)}
    pool = _shared_pool(threads)
    futures = [(order[id(job)], pool.submit(_tracked(job[1]))) for job in sorted(big, key=lambda j: -j[0])]
    errors = []

    def stop_after(index):
        """Cancel the pool's jobs that come after ``index``: they cannot change which error wins."""
        for i, future in futures:
            if i > index:
                future.cancel()

    try:
        for i, job in enumerate(jobs):
            if job[0] < INLINE_COST:
                try:
                    job[1]()
                except KeyboardInterrupt:
                    raise
                except BaseException as error:  # noqa: BLE001 - re-raised below, in job order
                    errors.append((i, error))
                    stop_after(i)
                    break
        for i, future in futures:  # wait for every job that started: none may outlive the call
            if future.cancelled():
                continue
            error = future.exception()
            if error is not None:
                errors.append((i, error))
                stop_after(i)
    except KeyboardInterrupt:  # Ctrl-C here, or in a job on this thread: nothing queued starts
        _drain(future for _, future in futures)
        raise
    if errors:
        raise min(errors, key=lambda e: e[0])[1]


def map_ordered(function, items, costs, threads: int | None = None) -> list:
    """``[function(item) for item in items]``, the calls spread over threads as :func:`run_jobs`
    spreads jobs (``costs``: one per item); raises what the first failing call raises."""
    results = [None] * len(items)

    def job(i, item):
        def run():
            results[i] = function(item)
        return run

    run_jobs([(cost, job(i, item)) for i, (item, cost) in enumerate(zip(items, costs))], threads)
    return results


def imap_ordered(function, items, costs, threads: int | None = None, window: float = 0,
                 limit: float | None = None):
    """``function(item)`` for each of ``items``, yielded in order, computed ahead on ``threads`` threads.

    For producer/consumer loops (the packer searches the next tensors' encodings while it writes
    this one). An item is started once ``threads`` items are not already pending, or while the
    ``costs`` of the pending ones (the results not yet taken) stay within ``window``, so that one
    long item does not stall the others and memory stays bounded. Uses its own threads, not the
    shared pool (``function`` may itself call :func:`run_jobs`, which waits on the shared pool).
    With ``limit``, the bound is on memory instead: an item is started only while the costs of
    the pending items and its own stay within ``limit`` (an item larger than that runs alone),
    however many are pending. An exception is raised when its item's turn comes; items not yet
    started are then cancelled, as they are when the caller stops iterating early."""
    threads = resolve_threads(threads)
    items, costs = list(items), list(costs)
    if threads == 1 or len(items) < 2:
        for item in items:
            yield function(item)
        return
    pending: collections.deque = collections.deque()
    pending_cost = 0.0
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dcformat-ahead")
    job = _tracked(function)
    interrupted = False
    try:
        for item, cost in zip(items, costs):
            while pending and (pending_cost + cost > limit if limit is not None
                               else len(pending) >= threads and pending_cost + cost > window):
                result = pending[0][0].result()  # still pending while waited on: a Ctrl-C drains it too
                pending_cost -= pending.popleft()[1]
                yield result
            pending.append((pool.submit(job, item), cost))
            pending_cost += cost
        while pending:
            result = pending[0][0].result()
            pending.popleft()
            yield result
    except KeyboardInterrupt:
        interrupted = True  # Ctrl-C: the running jobs stop at their next check_stop()
        request_stop()
        raise
    finally:
        # Interrupted here, or closed by a caller that was (a Ctrl-C in the loop's body: the
        # command's handler has asked for a stop): nothing queued starts, the running jobs stop.
        if interrupted or stopping():
            ended = _drain(future for future, _ in pending)
            pool.shutdown(wait=ended, cancel_futures=True)
            if interrupted and ended:  # jobs left running (set_stop_wait) would go on if the stop were lifted
                clear_stop()
        else:
            for future, _ in pending:
                future.cancel()
            pool.shutdown(wait=True)
