"""Batched decoding for the captioner sampler: requests from many threads decoded together by one worker thread,
and the process-wide hooks that stop every worker before a fork and at exit."""

from __future__ import annotations

import atexit
import os
import time
import weakref
from typing import TYPE_CHECKING, Any, Optional

import torch

if TYPE_CHECKING:  # annotations only: the model module is imported by whoever builds a batcher
    from mipd_kit.language.captioner.model import Caption, Captioner


class Batcher:
    """Decodes requests from many threads in batches: a worker thread (started on demand, gone after a second
    without requests) takes the first queued request, waits up to ``wait_s`` for up to ``size - 1`` more with the
    same sampling controls, runs one ``Captioner.generate`` over them and hands each caller its row.

    The worker never outlives a fork or the interpreter: before this process forks (the side-by-side runners of
    ``mipd_kit.machine.fork_map``, a DataLoader's workers) and at exit, every batcher's worker finishes its batch and
    stops (:meth:`stop`), and the fork waits until its threads have ended (``mipd_kit.machine.settle_threads``), so no
    child copies a thread that is inside torch or ending (whose MKL and OpenMP locks it would inherit held), and no
    daemon thread is torn down inside native code at exit. Requests still queued get a new worker after the fork."""

    def __init__(self, captioner: Captioner, size: int, wait_s: float):
        import queue
        import threading
        self.captioner, self.size, self.wait_s = captioner, size, wait_s
        self.q: "queue.Queue" = queue.Queue()
        self.lock = threading.Lock()
        self.worker: Optional[Any] = None
        self.ended = float("-inf")  # time.monotonic() when a worker last ended (its OpenMP team ends after it)
        self.batches = 0
        self.rows = 0
        _BATCHERS.add(self)

    def submit(self, toks: torch.Tensor, boxes: torch.Tensor, seed: int, banned: list[int], prefix: list[int],
               temperature: float, top_p: float) -> "Caption":
        from concurrent.futures import Future
        fut: Future = Future()
        self.q.put((fut, toks, boxes, seed, banned, prefix, (temperature, top_p)))
        self._ensure_worker()
        return fut.result()

    def _ensure_worker(self) -> None:
        import threading
        with self.lock:
            if self.worker is None or not self.worker.is_alive():
                self.worker = threading.Thread(target=self._loop, name="captioner-batcher", daemon=True)
                self.worker.start()

    def stop(self) -> bool:
        """Let the worker finish the batch it is decoding and end; requests queued meanwhile wait for
        :meth:`resume` (or the next :meth:`submit`). Returns whether a worker was stopped."""
        import threading
        with self.lock:  # under the lock: a worker ending for idleness checks the queue under it too
            w = self.worker
            if w is None or w is threading.current_thread() or not w.is_alive():
                return False
            self.q.put(_STOP)
        w.join()
        return True

    def resume(self) -> None:
        """Start a worker again if requests wait (after :meth:`stop`)."""
        if not self.q.empty():
            self._ensure_worker()

    def _reset_in_child(self) -> None:
        """In a forked child: the parent's worker and callers do not exist here; start empty."""
        import queue
        import threading
        self.q, self.lock, self.worker, self.ended = queue.Queue(), threading.Lock(), None, float("-inf")

    def _loop(self) -> None:
        import queue
        while True:
            try:
                first = self.q.get(timeout=1.0)
            except queue.Empty:
                with self.lock:
                    if self.q.empty():
                        self.worker, self.ended = None, time.monotonic()
                        return
                continue
            if first is _STOP:
                with self.lock:
                    self.worker, self.ended = None, time.monotonic()
                return
            batch, held, stop = [first], [], False
            deadline = time.perf_counter() + self.wait_s
            while len(batch) < self.size:
                try:
                    item = self.q.get(timeout=max(0.0, deadline - time.perf_counter()))
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                (batch if item[6] == first[6] else held).append(item)
            for item in held:  # other sampling controls: next batch
                self.q.put(item)
            try:
                temperature, top_p = first[6]
                caps = self.captioner.generate(torch.cat([b[1] for b in batch]), torch.cat([b[2] for b in batch]),
                                               temperature=temperature, top_p=top_p, seeds=[b[3] for b in batch],
                                               banned=[b[4] for b in batch], prefix=[b[5] for b in batch])
                self.batches += 1
                self.rows += len(batch)
                for b, c in zip(batch, caps):
                    b[0].set_result(c)
            except BaseException as e:  # every caller of this batch gets the error
                for b in batch:
                    if not b[0].done():
                        b[0].set_exception(e)
            if stop:
                with self.lock:
                    self.worker, self.ended = None, time.monotonic()
                return


_STOP = object()  # queued by Batcher.stop: the worker ends after its batch
_BATCHERS: "weakref.WeakSet[Batcher]" = weakref.WeakSet()


def stop_batchers() -> None:
    stopped = [b.stop() for b in list(_BATCHERS)]
    recent = any(time.monotonic() - b.ended < 1.0 for b in list(_BATCHERS))
    if any(stopped) or recent:  # an ended worker's OpenMP team (and its native exit) ends a moment after it: wait
        from mipd_kit.machine import settle_threads
        settle_threads()


def _resume_batchers() -> None:
    for b in list(_BATCHERS):
        b.resume()


def _reset_batchers_in_child() -> None:
    for b in list(_BATCHERS):
        b._reset_in_child()


os.register_at_fork(before=stop_batchers, after_in_parent=_resume_batchers, after_in_child=_reset_batchers_in_child)
atexit.register(stop_batchers)
