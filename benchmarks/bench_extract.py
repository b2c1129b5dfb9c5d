"""Throughput of `cpc_tf extract` with the seed-default CPC, and `cpc_tf evaluate` on 10k rows.

Extraction: configs/cpc_conv1d_gru.yaml (4 s crops at 4410 Hz = 30 windows of 588,
Conv1D encoder + GRU, c_T of dimension 512), randomly initialised (the weights do not
change the cost), 10 random crops per file (Bajorath et al. 2021, §2.3), on the first 200 files of
../shared/data/fsdd/recordings (0.14-2.3 s clips, looped to 4 s), or on 200 synthetic
1 s clips when that folder is absent. The cache is built before the clock starts (it is
decoded once and reused by every later run); the timed part is the whole library call
``cpc_tf.extract.extract``: crops cut in tf.data, the model, labels, the npz written.

Evaluation: the measurement of benchmarks/bench_evaluate.py (10,000 synthetic
embeddings, 1,000 files x 10 crops, d = 512, default EvalConfig with t-SNE).

Prints one JSON line:

    {"bench": "extract", "clips_per_s": ..., "crops_per_s": ..., "evaluate_10k_s": ..., ...}

Usage: python benchmarks/bench_extract.py [--files N] [--skip-evaluate]
The numbers depend on the load of the machine; the line records the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FSDD = REPO.parent / "shared" / "data" / "fsdd" / "recordings"


def _audio_folder(root: Path, n_files: int) -> tuple[Path, str]:
    """A folder of `n_files` clips: symlinks to FSDD files, else synthetic tones."""
    folder = root / "audio"
    folder.mkdir()
    if FSDD.is_dir():
        for src in sorted(FSDD.glob("*.wav"))[:n_files]:
            (folder / src.name).symlink_to(src)
        return folder, "fsdd"
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    t = np.arange(8000) / 8000
    for i in range(n_files):
        tone = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t) + 0.01 * rng.normal(size=t.size)
        sf.write(folder / f"{i % 10}_synth_{i}.wav", tone.astype(np.float32), 8000)
    return folder, "synthetic"


def measure_extract(n_files: int, crops_per_file: int = 10) -> dict:
    """Seconds and rates of one extraction over a warm cache."""
    import keras

    from cpc_tf.audio.cache import open_cache
    from cpc_tf.config import load_config, resolve_config_path
    from cpc_tf.extract import ExtractOptions, extract
    from cpc_tf.models.factory import build_model

    cfg = load_config(
        resolve_config_path("cpc_conv1d_gru"), [f"eval.crops_per_file={crops_per_file}"]
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder, source = _audio_folder(Path(tmp), n_files)
        cache_dir = os.path.join(tmp, "cache")
        t0 = time.perf_counter()
        cache = open_cache(folder, cfg.data.sample_rate, cache_dir=cache_dir, progress=False)
        cache_s = time.perf_counter() - t0
        keras.utils.set_random_seed(0)
        model = build_model(cfg)
        start = time.perf_counter()
        payload = extract(
            cfg,
            model,
            ExtractOptions(
                audio_dir=str(folder),
                out=os.path.join(tmp, "e.npz"),
                labels=r"regex:^(\d)_",
                cache_dir=cache_dir,
                progress=False,
            ),
        )
        elapsed = time.perf_counter() - start
    rows = len(payload["embeddings"])
    files = len(cache.clips)
    return {
        "clips_per_s": round(files / elapsed, 2),
        "crops_per_s": round(rows / elapsed, 1),
        "extract_s": round(elapsed, 1),
        "files": files,
        "crops": rows,
        "crops_per_file": crops_per_file,
        "audio": source,
        "cache_build_s": round(cache_s, 1),
        "config": "cpc_conv1d_gru (4 s @ 4410 Hz, 30x588, c_dim 512)",
    }


def measure_evaluate() -> float:
    """`evaluate` wall time on bench_evaluate.py's 10,000 synthetic embeddings."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_evaluate import make_embeddings

    from cpc_tf.config import EvalConfig
    from cpc_tf.evaluation.report import evaluate

    with tempfile.TemporaryDirectory() as tmp:
        emb = os.path.join(tmp, "embeddings.npz")
        make_embeddings(emb)
        start = time.perf_counter()
        evaluate(emb, EvalConfig(), os.path.join(tmp, "report"))
        return round(time.perf_counter() - start, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--skip-evaluate", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(REPO))
    import tensorflow as tf  # noqa: F401  (import cost is not part of the measurement)

    result = {"bench": "extract"}
    result.update(measure_extract(args.files))
    result["evaluate_10k_s"] = None if args.skip_evaluate else measure_evaluate()
    result["cpus"] = os.cpu_count()
    result["load_avg_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
