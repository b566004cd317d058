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
from typing import Any, Optional, Sequence

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


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m mipd_kit.machine``: print the machine facts as JSON."""
    del argv
    print(json.dumps(machine_facts(), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
