"""Input-pipeline throughput, and whether the pipeline slows training down.

usage: python benchmarks/bench_pipeline.py [--batches N] [--steps N] [--rounds N]
                                           [--cache-dir DIR] [--threads N] [--skip-peer]

- cpc_examples_per_s: seed-default CPC windows ([8, 30, 588] at 4410 Hz) per second
  from ``cpc_windows`` over the cache of ../shared/data/fsdd (3,000 real digits).
- simclr_views_per_s: SimCLR views (59,049 samples at 22,050 Hz, two per example,
  batch 16) per second from ``simclr_views`` with the full augmentation chain in
  tf.data (``augment.where: pipeline``), over ../shared/data/recordings.
- aug_speedup_vs_audiomentations: benchmarks/bench_augment.py's measurement (our
  batched chain ÷ audiomentations one clip at a time), imported and run here.
- train_slowdown_vs_in_memory: steps/s of the seed-default CPC (batch 8) fed one
  fixed in-memory batch ÷ steps/s of the same model fed from the real pipeline
  (target ≤ 1.1). Both go through the training engine's distributed step; blocks
  of steps alternate between the two feeds so that drifting machine load hits both.

Without ../shared/data the folders are replaced by synthetic music (the JSON says
so). TensorFlow uses every core it sees (``--threads`` limits it); the figures in
the project's notes are for 2 cores. Prints human-readable lines, then one JSON line.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from common import REPO, SHARED, emit  # noqa: E402

CONFIGS = REPO / "configs"


def audio_folder(name: str, tmp: str, rate: int) -> tuple[str, str]:
    """../shared/data/<name>, or a synthetic stand-in written under `tmp`."""
    real = SHARED / "data" / name
    if real.is_dir():
        return str(real), str(real)
    from cpc_tf.synth import SynthSpec, write_dataset

    folder = os.path.join(tmp, f"synthetic_{name}")
    if not os.path.isdir(folder):
        files, seconds = (200, 1.5) if name == "fsdd" else (4, 30.0)
        write_dataset(
            folder,
            SynthSpec(
                classes=("strings", "drums", "bells", "winds"),
                files_per_class=files // 4,
                seconds=seconds,
                sample_rate=rate,
            ),
        )
    return folder, "synthetic"


def open_data(name: str, rate: int, cache_dir: str, tmp: str):
    from cpc_tf.audio.cache import open_cache

    folder, source = audio_folder(name, tmp, rate)
    return open_cache(folder, rate, cache_dir=cache_dir, progress=False), source


def throughput(ds, batches: int, per_batch: int) -> float:
    """Items per second over `batches` batches, after the first (shuffle buffers fill)."""
    it = iter(ds)
    next(it)
    next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * per_batch / (time.perf_counter() - start)


def cpc_config(batch: int = 8):
    from cpc_tf.config import load_config

    return load_config(CONFIGS / "cpc_conv1d_gru.yaml", [f"train.batch_size={batch}"])


def simclr_config(batch: int = 16, **overrides: object):
    from cpc_tf.config import load_config

    extra = [f"train.batch_size={batch}"] + [f"{k}={v}" for k, v in overrides.items()]
    return load_config(CONFIGS / "clmr_samplecnn.yaml", extra)


def pipeline_vs_memory(model, dataset_fn, steps: int, rounds: int) -> tuple[float, float]:
    """(in-memory steps/s, pipeline steps/s) of `model` through the engine's train step.

    `dataset_fn(input_context)` builds the real pipeline; the in-memory feed repeats
    its first batch as a constant. Blocks of `steps` alternate between the feeds for
    `rounds` rounds; each feed's rate is the median over its blocks.
    """
    import tensorflow as tf

    from cpc_tf.training import Trainer

    strategy = tf.distribute.get_strategy()
    trainer = Trainer(model, strategy, lambda ctx, epoch, training: dataset_fn(ctx))
    iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))
    fixed = tf.nest.map_structure(tf.identity, next(iterator))
    for _ in range(2):  # trace and warm up both feeds (same input signature)
        float(trainer.train_fn(fixed)["loss"])
        float(trainer.train_fn(next(iterator))["loss"])

    def block(feed) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            float(trainer.train_fn(feed())["loss"])
        return steps / (time.perf_counter() - start)

    memory, piped = [], []
    for _ in range(rounds):
        memory.append(block(lambda: fixed))
        piped.append(block(lambda: next(iterator)))
    return statistics.median(memory), statistics.median(piped)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--batches", type=int, default=100, help="timed CPC batches (SimCLR: a tenth, at least 4)"
    )
    ap.add_argument("--steps", type=int, default=10, help="training steps per timing block")
    ap.add_argument("--rounds", type=int, default=3, help="alternating in-memory/pipeline blocks")
    ap.add_argument(
        "--cache-dir", default="", help="reuse decoded caches here (default: a temporary folder)"
    )
    ap.add_argument(
        "--threads", type=int, default=0, help="TensorFlow intra/inter-op threads (0 = all cores)"
    )
    ap.add_argument("--peer-batches", type=int, default=4, help="audiomentations batches of 16")
    ap.add_argument("--skip-peer", action="store_true", help="skip the audiomentations comparison")
    args = ap.parse_args()

    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from cpc_tf.audio.datasets import cpc_windows, simclr_views, split_clips
    from cpc_tf.models.registry import model_input_shape
    from cpc_tf.training import compile_model

    result: dict = {
        "bench": "pipeline",
        "cores": os.cpu_count(),
        "threads": args.threads or None,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = args.cache_dir or os.path.join(tmp, "cache")

        # ---- CPC windows
        cfg = cpc_config()
        fsdd, source = open_data("fsdd", cfg.data.sample_rate, cache_dir, tmp)
        ids = split_clips(fsdd, cfg).train
        cpc_rate = throughput(
            cpc_windows(fsdd, cfg, ids, 8, input_shape=model_input_shape(cfg)), args.batches, 8
        )
        print(
            f"CPC windows [8, 30, 588] from {len(ids)} clips ({source}): {cpc_rate:,.0f} examples/s"
        )
        result["cpc_examples_per_s"] = round(cpc_rate, 1)
        result["cpc_data"] = source

        # ---- SimCLR views with the augmentation chain in tf.data
        scfg = simclr_config(16)
        recs, rsource = open_data("recordings", scfg.data.sample_rate, cache_dir, tmp)
        rids = split_clips(recs, scfg).train
        simclr_batches = max(4, args.batches // 10)
        views = throughput(simclr_views(recs, scfg, rids, 16), simclr_batches, 32)
        plain_cfg = simclr_config(16, **{"augment.enabled": "false"})
        plain = throughput(simclr_views(recs, plain_cfg, rids, 16), simclr_batches, 32)
        print(
            f"SimCLR views (2 x 59,049 at 22,050 Hz, batch 16, {rsource}): {views:,.1f} views/s "
            f"augmented, {plain:,.1f} views/s without the chain"
        )
        result["simclr_views_per_s"] = round(views, 1)
        result["simclr_views_per_s_no_aug"] = round(plain, 1)

        # ---- augmentation vs audiomentations (bench_augment's own measurement)
        if not args.skip_peer:
            import bench_augment
            import numpy as np

            clips, _ = bench_augment.load_clips(
                SHARED / "data" / "recordings", 4 * bench_augment.BATCH, np.random.default_rng(0)
            )
            ours = bench_augment.bench_ours(clips, 10, skip_unfired=True)
            peer, room = bench_augment.bench_peer(clips, args.peer_batches)
            print(
                f"augmentation: ours {ours:.1f} examples/s, "
                f"audiomentations ({room}) {peer:.1f} examples/s"
            )
            result["aug_speedup_vs_audiomentations"] = round(ours / peer, 2)

        # ---- training fed from the pipeline vs from memory
        model = compile_model(cfg)

        def dataset_fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
            return cpc_windows(
                fsdd,
                cfg,
                ids,
                ctx.get_per_replica_batch_size(8),
                input_context=ctx,
                input_shape=model_input_shape(cfg),
            )

        mem, piped = pipeline_vs_memory(model, dataset_fn, args.steps, args.rounds)
        print(
            f"CPC training, batch 8: {mem:.2f} steps/s in memory, "
            f"{piped:.2f} steps/s from the pipeline"
        )
        result["train_steps_per_s_in_memory"] = round(mem, 3)
        result["train_steps_per_s_pipeline"] = round(piped, 3)
        result["train_slowdown_vs_in_memory"] = round(mem / piped, 3)
    result["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    emit(result)


if __name__ == "__main__":
    main()
