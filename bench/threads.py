"""One thread count for a whole bench run, so that figures on a shared machine are comparable.

Two torch threads on a busy 2-core machine swung the same GRPO step from 0.5 s to 27 s; a bench pins
torch's intra-op threads, the BLAS/OpenMP pools (numpy, librosa) and, through the environment, any
process it starts (the acoustic workers) to ``--threads`` (default 1).
"""

from __future__ import annotations

import os

THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def pin_threads(n: int) -> str:
    """Use ``n`` threads everywhere this process controls; returns a one-line description."""
    if n < 1:
        raise SystemExit(f"--threads must be at least 1, got {n}")
    for name in THREAD_ENV:
        os.environ[name] = str(n)  # child processes, and libraries not yet loaded
    import torch

    torch.set_num_threads(n)
    try:  # BLAS pools already loaded with numpy
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:  # pragma: no cover (threadpoolctl comes with librosa's scikit-learn)
        pass
    return f"threads: {n} (torch intra-op {torch.get_num_threads()}, BLAS/OpenMP {n})"
