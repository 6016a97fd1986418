"""Run small linear algebra on one thread.

The matrices here are at most a few hundred rows: splitting them over threads costs more than it
saves, and on a shared machine extra threads fight each other. Two pools matter: torch's OpenMP
pool, and the OpenBLAS pools that numpy and scipy load (scipy >= 1.15 runs L-BFGS-B on BLAS, and
idle-spinning OpenBLAS threads then compete with torch; this alone halved our suggestion time).
OpenBLAS reads ``OPENBLAS_NUM_THREADS`` only when loaded, so we call its own setter through
ctypes (the way threadpoolctl does), and restore the previous counts afterwards.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_SETTERS = (
    ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
    ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
    ("openblas_set_num_threads", "openblas_get_num_threads"),
)
_blas: list[tuple[object, object]] | None = None
_lock = threading.Lock()
_depth = 0
_saved: list[int] = []
_saved_torch = 1


def _openblas_controls() -> list[tuple[object, object]]:
    """(set, get) functions of every OpenBLAS loaded in this process (Linux; else none)."""
    global _blas
    if _blas is not None:
        return _blas
    found: list[tuple[object, object]] = []
    try:
        paths = set()
        with open("/proc/self/maps") as fh:
            for line in fh:
                path = line.rsplit(" ", 1)[-1].strip()
                if "openblas" in path.lower() and ".so" in path:
                    paths.add(path)
        for path in sorted(paths):
            lib = ctypes.CDLL(path)
            for set_name, get_name in _SETTERS:
                if hasattr(lib, set_name) and hasattr(lib, get_name):
                    setter, getter = getattr(lib, set_name), getattr(lib, get_name)
                    setter.argtypes, setter.restype = [ctypes.c_int], None
                    getter.argtypes, getter.restype = [], ctypes.c_int
                    found.append((setter, getter))
                    break
    except OSError:
        found = []
    _blas = found
    return found


@contextmanager
def single_thread() -> Iterator[None]:
    """Limit torch and OpenBLAS to one thread inside the block (re-entrant)."""
    global _depth, _saved, _saved_torch
    with _lock:
        if _depth == 0:
            import scipy.optimize  # noqa: F401  (make sure scipy's OpenBLAS is loaded)

            controls = _openblas_controls()
            _saved = [int(get()) for _, get in controls]  # type: ignore[operator]
            for setter, _ in controls:
                setter(1)  # type: ignore[operator]
            _saved_torch = torch.get_num_threads()
            torch.set_num_threads(1)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for (setter, _), n in zip(_openblas_controls(), _saved, strict=False):
                    setter(n)  # type: ignore[operator]
                torch.set_num_threads(_saved_torch)
