"""Wall time of `cpc_tf evaluate` on 10,000 synthetic embeddings, t-SNE included.

The data mimic Bajorath et al. 2021, §2.3 at a GTZAN-like scale: 1,000 files x 10 crops, 10
classes, dimension 512 (c_dim). The evaluation uses the defaults of EvalConfig
(hold-out 0.2 by file, linear probe of Table 5: 10 epochs, batch 32; t-SNE of up to
5,000 train and 5,000 test crops). Prints exactly one JSON line:

    {"bench": "evaluate", "evaluate_10k_s": <seconds>, ...}

Usage: python benchmarks/bench_evaluate.py
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time


def make_embeddings(
    path: str,
    n_files: int = 1000,
    crops: int = 10,
    n_classes: int = 10,
    dim: int = 512,
    seed: int = 0,
) -> None:
    """Write a synthetic embeddings file with overlapping class clusters."""
    import numpy as np

    from cpc_tf.evaluation.embeddings import save_embeddings

    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_classes, dim)).astype(np.float32)
    file_class = np.arange(n_files) % n_classes
    file_center = centers[file_class] + 0.5 * rng.normal(size=(n_files, dim)).astype(np.float32)
    rows = np.repeat(file_center, crops, axis=0) + 2.0 * rng.normal(
        size=(n_files * crops, dim)
    ).astype(np.float32)
    clip = np.repeat(np.arange(n_files), crops)
    save_embeddings(
        path,
        embeddings=rows.astype(np.float32),
        paths=np.array([f"genre{file_class[c]}/track{c:05d}.wav" for c in clip]),
        labels=np.array([f"genre{file_class[c]}" for c in clip]),
        crop_start=np.tile(np.arange(crops, dtype=np.float32) * 2.0, n_files),
        clip_index=clip,
        run=np.array(""),
        model=np.array("synthetic"),
    )


def main() -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from cpc_tf.config import EvalConfig
    from cpc_tf.evaluation.report import evaluate

    with tempfile.TemporaryDirectory() as tmp:
        emb = os.path.join(tmp, "embeddings.npz")
        make_embeddings(emb)
        import keras  # noqa: F401  (import cost is not part of the measurement)

        start = time.perf_counter()
        result = evaluate(emb, EvalConfig(), os.path.join(tmp, "report"))
        elapsed = time.perf_counter() - start
    acc = result["results"]["model"]["crop"]["accuracy"]["mean"]
    split = result["split"]["splits"][0]
    cap = EvalConfig().tsne_max_points
    tsne_points = min(cap, split["train_crops"]) + min(cap, split["test_crops"])
    print(
        json.dumps(
            {
                "bench": "evaluate",
                "evaluate_10k_s": round(elapsed, 1),
                "n": 10000,
                "dim": 512,
                "tsne_points": tsne_points,
                "crop_accuracy": round(acc, 3),
                "cpus": os.cpu_count(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
