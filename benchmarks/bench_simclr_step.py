"""The CLMR SimCLR training step (SampleCNN, batch 16) against PyTorch and the machine.

usage: python benchmarks/bench_simclr_step.py [--steps N] [--rounds N] [--threads N]
           [--cache-dir DIR] [--skip-torch] [--skip-tune] [--skip-aug]

- ratio_vs_torch_b16: our median s/step ÷ ../shared/bench/ref_samplecnn_torch.py's at
  batch 16 (two views of 59,049 samples each, NT-Xent, Adam), both measured in this
  run (target ≤ 0.45).
- ceiling_fraction: achieved FLOP/s ÷ TensorFlow's float32 matmul FLOP/s measured in
  this run (target ≥ 0.45). FLOPs are counted analytically from SampleCNN's layer
  shapes and the projection head (2 × multiply-adds), forward × 3 for forward+backward.
- aug_slowdown: SampleCNN steps/s fed one fixed in-memory batch ÷ steps/s fed from
  ``simclr_views`` with the whole augmentation chain in tf.data (target ≤ 1.1). Also
  printed: what the chain costs per step when it runs alone, transform by transform.
- tune_tail5_* / tune_plus_*: step time and peak memory of TUNe Tail+5 and TUNe+ (seed
  003 Table 1) relative to SampleCNN, at the same batch and crop.
Each model's step time and memory come from a fresh child process (this script with
``--child``), so peak RSS belongs to that model alone. Prints human-readable lines,
then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from common import REPO, emit, matmul_gflops, median_seconds, torch_peer  # noqa: E402

CONFIGS = REPO / "configs"
BATCH = 16
MODELS = {  # child name -> (config file, family)
    "samplecnn": ("clmr_samplecnn.yaml", "simclr"),
    "tune_tail5": ("tune_tail5.yaml", "simclr"),
    "tune_plus": ("tune_plus.yaml", "simclr"),
    "cpc": ("cpc_conv1d_gru.yaml", "cpc"),
}


def load(name: str, batch: int, *extra: str):
    from cpc_tf.config import load_config

    return load_config(CONFIGS / MODELS[name][0], [f"train.batch_size={batch}", *extra])


# ------------------------------------------------------------------ FLOPs
def samplecnn_forward_flops(cfg, views: int) -> float:
    """2 × multiply-adds of SampleCNN + projection head for `views` crops (convs and dense only)."""
    s = cfg.model.samplecnn
    length = cfg.crop_samples // 3  # stem: kernel 3, stride 3, valid
    flops = 2 * 3 * 1 * s.stem_filters * length
    cin = s.stem_filters
    for cout in s.channels:  # block: kernel 3 'same' conv, then max-pool 3
        flops += 2 * 3 * cin * cout * length
        cin, length = cout, length // 3
    flops += 2 * 3 * cin * s.out_filters * length
    rep = s.out_filters * length
    for units in cfg.model.projection_dims:
        flops += 2 * rep * units
        rep = units
    return flops * views


# ------------------------------------------------------------------ conv variants
def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited across exec)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ------------------------------------------------------------------ one model, one process
def child(name: str, batch: int, steps: int, threads: int) -> dict:
    """Median s/step and memory of `name` on in-memory inputs (run in a fresh process)."""
    import numpy as np
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    from cpc_tf.training import compile_model

    extra = ["augment.enabled=false"] if MODELS[name][1] == "simclr" else []
    cfg = load(name, batch, *extra)
    model = compile_model(cfg)
    rng = np.random.default_rng(0)
    if cfg.model.family == "simclr":
        data = tuple(
            tf.constant(rng.normal(0, 0.1, (batch, cfg.crop_samples)), tf.float32) for _ in range(2)
        )
    else:
        data = tf.constant(
            rng.normal(0, 0.1, (batch, cfg.num_windows, cfg.window_samples)), tf.float32
        )
    step = tf.function(model.train_step)
    float(step(data)["loss"])
    sec = median_seconds(lambda: float(step(data)["loss"]), steps, warmup=1)
    return {
        "model": name,
        "s_per_step": sec,
        "peak_rss_mib": peak_rss_mib(),
        "params": int(model.encoder.count_params()),
    }


def run_child(name: str, args: argparse.Namespace, batch: int = BATCH) -> dict:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        name,
        "--batch",
        str(batch),
        "--steps",
        str(args.steps),
        "--threads",
        str(args.threads),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=7200)
    if out.returncode != 0:
        sys.exit(f"child {name} failed:\n{out.stderr[-3000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        f"  {name}, batch {batch}: {res['s_per_step']:.3f} s/step, "
        f"peak RSS {res['peak_rss_mib']:.0f} MiB, {res['params']:,} encoder parameters"
    )
    return res


def _chain(cfg, rate: int):
    """``(x, seed) -> augment_batch(x, cfg, rate, seed)`` closing over `cfg` (tf.function
    cannot take the unhashable config as an argument)."""
    from cpc_tf.dsp.augment import augment_batch

    return lambda x, seed: augment_batch(x, cfg, rate, seed)


def aug_profile(rate: int, views: int) -> dict[str, float]:
    """Seconds one batch of `views` crops spends in each transform (at its configured p)."""
    import dataclasses

    import numpy as np
    import tensorflow as tf

    from cpc_tf.config import AugmentConfig

    names = ("polarity", "noise", "gain", "filter", "delay", "pitch", "reverb")
    x = tf.constant(np.random.default_rng(0).normal(0, 0.1, (views, 59049)), tf.float32)
    out = {}
    for name in ("all",) + names:
        cfg = AugmentConfig()
        if name != "all":
            cfg = dataclasses.replace(cfg, **{f"{n}_p": 0.0 for n in names if n != name})
        fn = tf.function(_chain(cfg, rate))
        fn(x, tf.constant([0, 0], tf.int64)).numpy()
        counter = iter(range(1, 1000))
        out[name] = median_seconds(
            lambda fn=fn, counter=counter: fn(x, tf.constant([1, next(counter)], tf.int64)).numpy(),
            5,
            warmup=0,
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6, help="timed steps per measurement")
    ap.add_argument(
        "--rounds", type=int, default=3, help="alternating in-memory/pipeline blocks (aug_slowdown)"
    )
    ap.add_argument(
        "--threads", type=int, default=0, help="TensorFlow intra/inter-op threads (0 = all cores)"
    )
    ap.add_argument("--cache-dir", default="", help="reuse the decoded recordings cache here")
    ap.add_argument("--skip-torch", action="store_true")
    ap.add_argument("--skip-tune", action="store_true")
    ap.add_argument("--skip-aug", action="store_true")
    ap.add_argument("--child", choices=sorted(MODELS), help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=BATCH, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.batch, args.steps, args.threads)))
        return

    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    result: dict = {
        "bench": "simclr_step",
        "batch": BATCH,
        "cores": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    ceiling = matmul_gflops()
    print(f"TensorFlow float32 matmul ceiling: {ceiling:.0f} GFLOP/s")
    result["matmul_gflops"] = round(ceiling, 1)

    print("step time and memory (fresh process per model):")
    sc = run_child("samplecnn", args)
    ours = sc["s_per_step"]
    flops = 3 * samplecnn_forward_flops(load("samplecnn", BATCH), 2 * BATCH)
    achieved = flops / ours / 1e9
    print(
        f"SampleCNN batch {BATCH}: {ours:.3f} s/step, {flops / 1e9:.0f} GFLOP/step, "
        f"{achieved:.0f} GFLOP/s"
    )
    result.update(
        {
            "ours_s_b16": round(ours, 4),
            "gflop_per_step": round(flops / 1e9, 1),
            "ceiling_fraction": round(achieved / ceiling, 3),
        }
    )
    if not args.skip_torch:
        theirs = torch_peer("ref_samplecnn_torch.py", str(BATCH), str(args.steps))
        result["torch_s_b16"] = round(theirs, 4)
        result["ratio_vs_torch_b16"] = round(ours / theirs, 3)
        print(f"ratio vs torch: {ours / theirs:.3f}")

    if not args.skip_tune:
        for name in ("tune_tail5", "tune_plus"):
            res = run_child(name, args)
            result[f"{name}_s_per_step"] = round(res["s_per_step"], 4)
            result[f"{name}_time_rel"] = round(res["s_per_step"] / ours, 3)
            result[f"{name}_peak_rss_mib"] = round(res["peak_rss_mib"])
            result[f"{name}_mem_rel"] = round(res["peak_rss_mib"] / sc["peak_rss_mib"], 3)
        result["samplecnn_peak_rss_mib"] = round(sc["peak_rss_mib"])

    if not args.skip_aug:
        from bench_pipeline import open_data, pipeline_vs_memory

        from cpc_tf.audio.datasets import simclr_views, split_clips
        from cpc_tf.training import compile_model

        cfg = load("samplecnn", BATCH)
        prof = aug_profile(cfg.data.sample_rate, BATCH)
        print(
            f"augmentation chain alone, {BATCH} views: "
            + ", ".join(f"{k} {1e3 * v:.0f} ms" for k, v in prof.items())
        )
        result["aug_ms_per_16_views"] = {k: round(1e3 * v, 1) for k, v in prof.items()}
        with tempfile.TemporaryDirectory() as tmp:
            recs, source = open_data(
                "recordings",
                cfg.data.sample_rate,
                args.cache_dir or os.path.join(tmp, "cache"),
                tmp,
            )
            ids = split_clips(recs, cfg).train
            model = compile_model(cfg)

            def dataset_fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
                return simclr_views(
                    recs, cfg, ids, ctx.get_per_replica_batch_size(BATCH), input_context=ctx
                )

            mem, piped = pipeline_vs_memory(model, dataset_fn, args.steps, args.rounds)
        print(
            f"SampleCNN training, batch {BATCH}: {mem:.3f} steps/s in memory, "
            f"{piped:.3f} steps/s from the augmenting pipeline ({source})"
        )
        result["aug_steps_per_s_in_memory"] = round(mem, 4)
        result["aug_steps_per_s_pipeline"] = round(piped, 4)
        result["aug_slowdown"] = round(mem / piped, 3)
        # If the chain simply shares the cores with the step, the slowdown is about
        # 1 + (chain time for 2 x BATCH views) / (step time).
        result["aug_slowdown_if_serial"] = round(1 + 2 * prof["all"] * mem, 3)
    result["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    emit(result)


if __name__ == "__main__":
    main()
