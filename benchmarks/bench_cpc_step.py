"""The seed-default CPC training step against PyTorch, the machine's ceiling, and memory.

usage: python benchmarks/bench_cpc_step.py [--steps N] [--skip-rss]

- ratio_vs_torch_b8 / _b32: our median s/step ÷ ../shared/bench/ref_cpc_torch.py's, both
  measured in this run on this machine (target ≤ 0.6).
- ceiling_fraction: FLOP/s of our batch-8 step ÷ TensorFlow's float32 matmul FLOP/s.
  FLOPs are counted analytically from the layer shapes (forward × 3 for forward+backward).
- rss_growth_10x: peak RSS of `cpc_tf train` (fixed steps) on 2,000 clips ÷ on 200 clips.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from common import emit, matmul_gflops, median_seconds, peak_rss_of, torch_peer  # noqa: E402


def cpc_forward_flops(cfg, batch: int) -> float:
    """Multiply-adds ×2 of the window encoder, GRU and predictors for one forward pass."""
    w = cfg.window_samples
    enc = cfg.model.conv1d
    length, cin, flops = w, 1, 0.0
    for k, s in zip(enc.kernels, enc.strides):
        length = (length - k) // s + 1
        flops += 2 * k * cin * enc.filters * length
        cin = enc.filters
    flat = length * enc.filters
    flops += 2 * (flat * enc.hidden_units + enc.hidden_units * cfg.model.z_dim)
    per_example = flops * cfg.num_windows
    z, c = cfg.model.z_dim, cfg.model.c_dim
    per_example += cfg.model.context_steps * 2 * 3 * (z * c + c * c)
    per_example += cfg.model.predict_steps * 2 * c * z
    return per_example * batch


def our_step_seconds(batch: int, steps: int) -> tuple[float, float]:
    import numpy as np
    import tensorflow as tf

    from cpc_tf.config import load_config
    from cpc_tf.models.factory import build_model
    from cpc_tf.training import make_optimizer

    cfg = load_config(
        os.path.join(os.path.dirname(__file__), "..", "configs", "cpc_conv1d_gru.yaml"),
        [f"train.batch_size={batch}"],
    )
    model = build_model(cfg)
    model.compile(optimizer=make_optimizer(cfg))
    x = tf.constant(
        np.random.default_rng(0).normal(size=(batch, cfg.num_windows, cfg.window_samples)),
        tf.float32,
    )
    step = tf.function(model.train_step)
    sec = median_seconds(lambda: float(step(x)["loss"]), steps)
    return sec, 3 * cpc_forward_flops(cfg, batch)


def rss_growth(tmp: str) -> float:
    from cpc_tf.synth import SynthSpec, write_dataset

    peaks = []
    for clips in (200, 2000):
        audio = os.path.join(tmp, f"audio_{clips}")
        write_dataset(
            audio,
            SynthSpec(
                classes=("strings", "drums", "bells", "winds"),
                files_per_class=clips // 4,
                seconds=5.0,
                sample_rate=22050,
            ),
        )
        cache = os.path.join(tmp, f"cache_{clips}")
        common = ["--audio-dir", audio, "--cache-dir", cache]
        peak_rss_of([sys.executable, "-m", "cpc_tf", "prepare", *common, "--sample-rate", "4410"])
        peak = peak_rss_of(
            [
                sys.executable,
                "-m",
                "cpc_tf",
                "train",
                *common,
                "--out",
                os.path.join(tmp, f"run_{clips}"),
                "--set",
                "train.epochs=1",
                "--set",
                "train.steps_per_epoch=20",
            ]
        )
        print(f"peak RSS of train on {clips} clips: {peak:.0f} MiB")
        peaks.append(peak)
    return peaks[1] / peaks[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--skip-rss", action="store_true")
    args = ap.parse_args()

    ceiling = matmul_gflops()
    print(f"TensorFlow float32 matmul ceiling: {ceiling:.0f} GFLOP/s")
    result = {"bench": "cpc_step"}
    for batch in (8, 32):
        ours, flops = our_step_seconds(batch, args.steps if batch == 8 else max(3, args.steps // 2))
        theirs = torch_peer(
            "ref_cpc_torch.py",
            str(batch),
            str(args.steps if batch == 8 else max(3, args.steps // 2)),
        )
        print(
            f"batch {batch}: cpc_tf {ours:.4f} s/step, torch {theirs:.4f} s/step, "
            f"{flops / ours / 1e9:.0f} GFLOP/s achieved"
        )
        result[f"ours_s_b{batch}"] = round(ours, 4)
        result[f"torch_s_b{batch}"] = round(theirs, 4)
        result[f"ratio_vs_torch_b{batch}"] = round(ours / theirs, 3)
        if batch == 8:
            result["ceiling_fraction"] = round(flops / ours / 1e9 / ceiling, 3)
    result["matmul_gflops"] = round(ceiling, 1)
    if not args.skip_rss:
        with tempfile.TemporaryDirectory() as tmp:
            result["rss_growth_10x"] = round(rss_growth(tmp), 3)
    emit(result)


if __name__ == "__main__":
    main()
