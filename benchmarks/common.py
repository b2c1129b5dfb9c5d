"""Shared pieces of the benchmark scripts: timing, the matmul ceiling, the PyTorch peer.

Benchmarks are run by hand (never in CI). Each prints human-readable lines and ends
with one line of JSON. Ratios always compare against a peer measured in the same run.
"""

from __future__ import annotations

import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
TORCH_PYTHON = os.environ.get("CPC_TF_TORCH_PYTHON", "/tmp/torchref/bin/python")


def median_seconds(step: Callable[[], object], steps: int, warmup: int = 2) -> float:
    """Median wall time of `step()` over `steps` calls after `warmup` calls."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def matmul_gflops(n: int = 2048, repeats: int = 20) -> float:
    """float32 matmul throughput of TensorFlow on this machine: the ceiling (GFLOP/s)."""
    import tensorflow as tf

    a = tf.random.normal([n, n])
    b = tf.random.normal([n, n])

    @tf.function
    def mm(x: tf.Tensor) -> tf.Tensor:
        return tf.reduce_sum(tf.matmul(x, b))

    sec = median_seconds(lambda: float(mm(a)), repeats, warmup=3)
    return 2 * n**3 / sec / 1e9


def torch_peer(script: str, *args: str, timeout: int = 1800) -> float:
    """Median s/step printed by a PyTorch reference in ../shared/bench (run now, same machine)."""
    if not os.path.exists(TORCH_PYTHON):
        sys.exit(
            f"PyTorch peer not found at {TORCH_PYTHON}: create it with\n"
            "  python -m venv /tmp/torchref && /tmp/torchref/bin/pip install torch==2.13.0 numpy\n"
            "or point CPC_TF_TORCH_PYTHON at a python with torch."
        )
    out = subprocess.run(
        [TORCH_PYTHON, str(SHARED / "bench" / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    ).stdout
    print(out.strip())
    match = re.search(r"median ([0-9.]+) s/step", out)
    if not match:
        sys.exit(f"could not read the peer's timing from: {out!r}")
    return float(match.group(1))


def peak_rss_of(cmd: list[str], env: dict | None = None, timeout: int = 3600) -> float:
    """Peak resident memory (MiB) of a command run in a fresh process (with its children)."""
    code = (
        "import resource, subprocess, sys; "
        "r = subprocess.run(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *cmd], capture_output=True, text=True, env=env, timeout=timeout
    )
    if out.returncode != 0:
        sys.exit(f"command failed: {' '.join(cmd)}\n{out.stderr[-2000:]}")
    return int(out.stdout.strip().splitlines()[-1]) / 1024.0


def emit(result: dict) -> None:
    """The closing JSON line every benchmark prints."""
    print(json.dumps(result, sort_keys=False))


def self_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
