"""A crash-tolerant process pool for decoding: results in task order, bounded in flight.

Generic: it runs any picklable ``fn(task) -> list`` and knows nothing about audio.
Its workers die with the process that started them, even when that one is killed
with ``kill -9`` (:func:`die_with_parent`), and leave Ctrl-C to it.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int, poll_seconds: float = 0.5) -> None:
    """Make this process exit as soon as process ``parent`` is gone.

    On Linux the kernel sends SIGKILL when the parent dies (``prctl(PR_SET_PDEATHSIG)``);
    everywhere, a daemon thread also checks ``os.getppid()`` every ``poll_seconds``
    (an orphan is re-parented, so its parent id changes).
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:  # it died before we asked
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        os._exit(1)

    threading.Thread(target=watch, name="cpc_tf_parent_watch", daemon=True).start()


def _start_worker(parent: int, initializer: Callable[[], Any] | None) -> None:
    """Initialiser of every worker: tie its life to the parent, ignore Ctrl-C (the
    parent handles it and stops the pool), then run the caller's initialiser.
    """
    die_with_parent(parent)
    with contextlib.suppress(ValueError, OSError):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if initializer is not None:
        initializer()


def _spawn_works() -> bool:
    """False when 'spawn' could not start workers: it re-runs the parent's main script,
    which fails for code read from stdin (``python - < script``).
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path is None or getattr(main, "__spec__", None) is not None:
        return True  # interactive, -c, or -m: nothing to re-run
    return os.path.isfile(path)


def check_not_bootstrapping() -> None:
    """Raise when called from a spawned worker that is still importing the parent's script.

    'spawn' workers import the parent's main script. A script that calls cpc_tf at its
    top level, without ``if __name__ == "__main__":``, would run that call again in
    every worker, which then waits forever for the cache lock held by its parent. The
    worker stops with this message instead; the parent decodes in its own process.
    """
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise RuntimeError(
            "cpc_tf was called while a decoding worker was starting: the worker re-runs "
            "your main script, so put the script's calls under "
            "'if __name__ == \"__main__\":' (the parent decodes in its own process meanwhile)"
        )


def _succeeded(future: Future[Any]) -> bool:
    """True for a future that finished without an exception (never blocks)."""
    return future.done() and not future.cancelled() and future.exception() is None


@dataclass
class _Slot:
    """One task of :meth:`DecodePool.imap`: where it runs and, once known, its result."""

    task: list[Any]
    cost: float = 1.0
    future: Future[list[Any]] | None = None
    result: list[Any] | None = None
    done: bool = False


class DecodePool:
    """Runs ``fn(task) -> list`` over tasks on ``workers`` decoders, yielding in task order.

    The decoders are this process plus ``workers - 1`` worker processes: the parent only
    writes shards, which leaves it mostly idle, so it decodes too whenever the next
    result is not ready (and it saves one worker's start-up). ``steal=False`` keeps all
    decoding in the workers. At most ``window`` tasks are in flight, so finished but
    unread results stay bounded. Workers are started with 'spawn' (TensorFlow in the
    parent makes 'fork' unsafe). If the pool breaks (a worker died), the unfinished
    tasks are re-run one item at a time in a single-worker pool and an item that kills
    its worker gets ``on_crash(item)``; if the pool never managed to run anything
    (spawning impossible here), the remaining work runs in this process instead.
    ``initializer`` runs once in each worker (it must be picklable by reference).
    """

    def __init__(
        self,
        workers: int,
        fn: Callable[[list[Any]], list[Any]],
        on_crash: Callable[[Any], Any],
        window: int | None = None,
        steal: bool = True,
        cost: Callable[[list[Any]], float] = len,
        initializer: Callable[[], Any] | None = None,
    ) -> None:
        self.workers = max(1, int(workers))
        self.initializer = initializer
        self.fn = fn
        self.cost = cost
        self.on_crash = on_crash
        self.steal = steal
        self.processes = self.workers - 1 if steal else self.workers
        self.window = window or max(8, 8 * self.workers)
        self.inline = self.processes < 1 or not _spawn_works()
        self._ex: ProcessPoolExecutor | None = None
        self._warm: list[Future[int]] = []
        self._healthy = False
        self._broken = False

    def _executor(self, n: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=n,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(os.getpid(), self.initializer),
        )

    def start(self) -> None:
        """Start the worker processes now (they boot while the caller does other work)."""
        if self.inline or self._ex is not None:
            return
        self._ex = self._executor(self.processes)
        self._warm = [self._ex.submit(os.getpid) for _ in range(self.processes)]

    def close(self, wait: bool = True) -> None:
        """Stop the workers: pending tasks are cancelled, running ones finish (waited for
        only when ``wait``).
        """
        if self._ex is not None:
            self._ex.shutdown(wait=wait, cancel_futures=True)
            self._ex = None

    def imap(self, tasks: Iterable[list[Any]]) -> Iterator[list[Any]]:
        """Results of ``fn`` for each task, in order."""
        it = iter(tasks)
        if self.inline:
            for task in it:
                yield self.fn(task)
            return
        self.start()
        slots: deque[_Slot] = deque()
        exhausted = False
        # one task running and one queued per worker; the rest stays free for this process
        queue_cap = 2 * self.processes if self.steal else self.window

        def refill() -> None:
            nonlocal exhausted
            while not exhausted and len(slots) < self.window:
                task = next(it, None)
                if task is None:
                    exhausted = True
                else:
                    slots.append(_Slot(task, float(self.cost(task))))
            if self._ex is None:
                return
            busy = sum(1 for s in slots if s.future is not None and not s.future.done())
            for s in slots:
                if busy >= queue_cap:
                    break
                if s.future is None and not s.done:
                    try:
                        s.future = self._ex.submit(self.fn, s.task)
                    except BrokenProcessPool:  # a worker already died: handled below
                        self._broken = True
                        return
                    busy += 1

        refill()
        while slots:
            if self._broken:
                self._broken = False
                self._after_crash(slots)
                refill()
                continue
            head = slots[0]
            if not head.done and head.future is None:  # no worker has it: run it here
                head.result, head.done = self.fn(head.task), True
            if not head.done:
                assert head.future is not None
                if self.steal and not head.future.done():
                    # Decode the next unassigned task here instead of waiting for the head,
                    # unless it is longer than each worker's queued work (the workers would
                    # run dry while this process is busy with it).
                    queued = sum(
                        s.cost for s in slots if s.future is not None and not s.future.done()
                    )
                    budget = queued / self.processes
                    spare = next(
                        (s for s in slots if s.future is None and not s.done and s.cost <= budget),
                        None,
                    )
                    if spare is not None:
                        spare.result, spare.done = self.fn(spare.task), True
                        refill()
                        continue
                try:
                    head.result, head.done = head.future.result(), True
                    self._healthy = True
                except BrokenProcessPool:
                    self._after_crash(slots)
                    refill()
                    continue
            slots.popleft()
            assert head.result is not None  # a finished slot holds its result
            yield head.result
            refill()

    def _after_crash(self, slots: deque[_Slot]) -> None:
        """A worker died: settle the tasks that were in the dead pool, then restart it."""
        self.close()
        for s in slots:
            f = s.future
            if s.done or f is None:
                continue
            s.future = None
            if _succeeded(f):
                s.result, s.done = f.result(), True
            else:
                s.result, s.done = self._recover(s.task), True
        if not self.inline:
            self._ex = self._executor(self.processes)

    def _recover(self, task: list[Any]) -> list[Any]:
        self._healthy = self._healthy or any(_succeeded(f) for f in self._warm)
        if not self._healthy:  # the pool never worked: do the rest here
            self.inline = True
            return self.fn(task)
        out: list[Any] = []
        solo: ProcessPoolExecutor | None = None
        try:
            for item in task:
                solo = solo or self._executor(1)
                try:
                    out.extend(solo.submit(self.fn, [item]).result())
                except BrokenProcessPool:
                    out.append(self.on_crash(item))
                    solo.shutdown(wait=True, cancel_futures=True)
                    solo = None
        finally:
            if solo is not None:
                solo.shutdown(wait=True)
        return out


def available_cpus() -> int:
    """CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
