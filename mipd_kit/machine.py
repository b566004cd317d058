"""The facts of a machine that decide float results: CPU model and vector extensions, torch / BLAS builds, threads.

Seeded runs of this toolkit repeat bit for bit only on the same machine, software stack and thread count: matrix
products and reductions in MKL / OpenBLAS / oneDNN split their float32 sums by thread count and by CPU features
(AVX2 vs AVX-512), so two machines (or two thread counts) agree only within float32 accumulation error. These facts
are recorded in every run's ``environment.json`` and printed by CI (``python -m mipd_kit.machine``) so that a
difference seen on another machine can be read without access to it.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from importlib import metadata
from typing import Any, Callable, Optional, Sequence

#: CPU flags that change which float kernels BLAS and torch pick.
VECTOR_FLAGS: tuple[str, ...] = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16")


def _cpu() -> dict[str, Any]:
    model: Optional[str] = None
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model is None:
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:  # not Linux: the platform module's answer is all we have
        model = platform.processor() or None
    return {"model": model, "machine": platform.machine(), "logical_cpus": os.cpu_count(),
            "vector_flags": [f for f in VECTOR_FLAGS if f in flags]}


def _version(pkg: str) -> Optional[str]:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def _torch() -> dict[str, Any]:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return {}
    build = dict(re.findall(r"\b(BLAS_INFO|LAPACK_INFO|TORCH_VERSION|USE_OPENMP)=([^,\s]*)", torch.__config__.show()))
    return {
        "version": torch.__version__,
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "mkl": torch.backends.mkl.is_available(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "build": build,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
    }


def _numpy_blas() -> list[dict[str, Any]]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [{k: d.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
            for d in threadpool_info()]


def machine_facts() -> dict[str, Any]:
    """CPU, torch and BLAS builds, thread counts and the environment variables that steer them (a JSON-able dict)."""
    import zlib

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": _cpu(),
        "torch": _torch(),
        "numpy": _version("numpy"),
        "numpy_blas": _numpy_blas(),
        "pillow": _version("pillow"),
        "zlib": zlib.ZLIB_RUNTIME_VERSION,
        "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "PYTHONHASHSEED")},
    }


# ----------------------------------------------------------------------------------------------- devices
#: the accepted ``device`` values (``cuda:N`` too).
DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N")


def resolve_device(spec: Any = "auto") -> "torch.device":
    """The ``device`` of a run config as a ``torch.device``: the one resolver of every stage that computes.

    Args:
        spec: ``"auto"`` (CUDA device 0 when CUDA is available, else the CPU; also ``None`` / ``""``), ``"cpu"``,
            ``"cuda"`` / ``"cuda:N"``, or a ``torch.device``.

    Raises:
        ValueError: an unknown spec, or CUDA asked for on a machine without it (the message says which).
    """
    import torch

    if isinstance(spec, torch.device):
        spec = str(spec)
    s = "auto" if spec is None or spec == "" else str(spec).strip().lower()
    if s == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    if s == "cpu":
        return torch.device("cpu")
    if re.fullmatch(r"cuda(:\d+)?", s):
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!r}: CUDA is not available on this machine (torch {torch.__version__}, "
                             f"built with CUDA {torch.version.cuda}); use device: auto or cpu")
        d = torch.device(s)
        if d.index is not None and d.index >= torch.cuda.device_count():
            raise ValueError(f"device {spec!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return d if d.index is not None else torch.device("cuda", torch.cuda.current_device())
    raise ValueError(f"device must be one of {DEVICE_CHOICES}, got {spec!r}")


def autocast(device: "torch.device", amp: bool) -> Any:
    """bf16 autocast on CUDA when ``amp``; a no-op context otherwise (CPU runs are never autocast, so their float
    results do not change)."""
    import contextlib

    import torch

    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(x: Any, device: "torch.device") -> Any:
    """A tensor (or a module) on ``device``; a no-op (the same object) when it is already there. Every batch and model
    of the training loops moves through here, so a test can record where they go. Pinned CPU tensors are copied to
    CUDA asynchronously."""
    import torch

    if torch.is_tensor(x):
        if x.device == device:
            return x
        return x.to(device, non_blocking=x.is_pinned() if device.type == "cuda" else False)
    return x.to(device)


def settle_threads(timeout_s: float = 5.0, quiet_s: float = 0.1) -> int:
    """Wait until no thread of this process has started or ended for ``quiet_s`` (at most ``timeout_s``); returns
    the thread count.

    Forking is safe only from a quiet process. A thread that ran torch on the CPU (a thread pool's worker, the
    captioner's batcher) leads its own OpenMP team; when it ends, its team's threads end a moment later, each freeing
    its MKL buffers under a lock. A fork in that moment copies the lock held, and the child spins on it for ever
    (seen as a worker stuck in ``mkl_serv_allocate``). :func:`fork_map` calls this before forking.
    """
    import threading
    import time

    def count() -> int:
        try:
            return len(os.listdir("/proc/self/task"))
        except OSError:  # not Linux: Python's threads only
            return threading.active_count()

    end = time.monotonic() + timeout_s
    n, since = count(), time.monotonic()
    while time.monotonic() < end:
        time.sleep(0.01)
        m = count()
        if m != n:
            n, since = m, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            break
    return n


#: torch threads of each forked worker of :func:`fork_map` (more would hang in GNU OpenMP, see there).
FORKED_THREADS = 1


def _one_thread(fn: Callable[..., Any], args: tuple) -> Any:
    import torch

    from .progress import set_worker
    torch.set_num_threads(FORKED_THREADS)
    set_worker()  # its progress bars write their lines to the parent's stderr, from the first step on
    return fn(*args)


def fork_map(fn: Callable[..., Any], args: Sequence[tuple], workers: int, name: Callable[[int], str],
             order: Optional[Sequence[int]] = None, on_result: Optional[Callable[[int, Any], None]] = None) -> list:
    """``fn(*args[i])`` for every job ``i`` in ``workers`` processes forked from this one (so they inherit what it
    prepared: set module state before calling), results in job order.

    It forks from a quiet process (:func:`settle_threads`): threads of this process that ran torch must have ended
    or be idle (helpers joined, as ``with ThreadPoolExecutor`` does; the captioner's batcher stops itself before any
    fork). Every worker runs **one torch thread** (:data:`FORKED_THREADS`): torch's CPU builds use GNU OpenMP,
    whose thread team does not survive a fork, so a parallel region in a forked child waits for threads that do not
    exist, for ever (the DataLoader's workers run one thread for the same reason). On a machine of N cores use N
    workers.

    The side-by-side runners of the stages (students, NMPAs, CL-HOI rows) use it; each job must write only its own
    files, so a failed job leaves the others' work on disk. A job's progress bars (``mipd_kit.progress``) write to
    the stderr the workers share with this process: a line at the end of their first epoch, then at most one per
    ``MIN_INTERVAL`` s, and their last (count, epoch, elapsed, ETA).

    A job that raises stops the map once the jobs already running have finished (their files are kept; jobs not yet
    started are cancelled). A worker that dies (killed, out of memory, a crash in native code) is an error naming
    its job, never a wait without end. Interrupting the parent (Ctrl-C, a notebook's stop button) terminates the
    workers.

    Args:
        order: submission order (e.g. longest first); default job order. Results stay in job order.
        on_result: called with (i, result) as each result arrives, in job order (the parent prints progress).
        name: job index -> what a failure names, e.g. ``"student mipd-seed0"``.

    Raises:
        RuntimeError: naming the job and the worker's error.
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from .progress import MIN_INTERVAL, progress

    settle_threads()  # no thread ending while the workers fork (see there)
    ex = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("fork"))
    bar = None
    try:
        submitted = {i: ex.submit(_one_thread, fn, args[i])
                     for i in (order if order is not None else range(len(args)))}
        out = []
        bar = progress(total=len(args), desc=f"{name(0).split(':')[0].split(' ')[0]} jobs on {workers} workers",
                       unit="job", heartbeat=MIN_INTERVAL)  # made after the fork: its thread stays in the parent
        for i in range(len(args)):
            try:
                out.append(submitted[i].result())
            except BrokenProcessPool as e:
                raise RuntimeError(f"{name(i)}: its worker process died (killed, out of memory or crashed in native "
                                   f"code) before returning; see the messages above") from e
            except Exception as e:
                raise RuntimeError(f"{name(i)} failed in a worker process: {type(e).__name__}: {e}") from e
            if on_result is not None:
                on_result(i, out[-1])
            bar.update(1)
        bar.close()
        ex.shutdown(wait=True)
        return out
    except Exception:
        if bar is not None:
            bar.close()
        ex.shutdown(wait=True, cancel_futures=True)  # the running jobs finish and keep their files
        raise
    except BaseException:  # KeyboardInterrupt, SystemExit: stop now
        if bar is not None:
            bar.close()
        for p in list((getattr(ex, "_processes", None) or {}).values()):
            p.terminate()
        ex.shutdown(wait=False, cancel_futures=True)
        raise


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m mipd_kit.machine``: print the machine facts as JSON."""
    del argv
    print(json.dumps(machine_facts(), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
