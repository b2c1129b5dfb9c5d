"""Representation quality on the Free Spoken Digit Dataset: trained vs random init vs MFCC.

For each preset (default: the seed's ``cpc_conv1d_gru``, CLMR's ``clmr_samplecnn`` and the
recommended ``cpc_wave``, ``simclr_wave`` and ``simclr_mel``):

1. pre-train on the official training takes of FSDD (takes 5-49, 2,700 files, no labels)
   for a fixed budget: ``--minutes`` of this machine (the step time is measured first
   and turned into whole epochs, so the cosine schedules end where they should), or
   ``--steps``;
2. extract embeddings of the training and test takes (the preset's own extraction
   settings; at most ``--crops`` random crops per file) with the trained model and with
   the same architecture at random init (the training seed);
3. probe digit and speaker with the default probe (logistic regression trained to
   convergence, C by cross-validation on the training files, file-level mean pooling)
   on the official test takes 0-4 (300 files), through ``cpc_tf.evaluation.report``.

Once per run: MFCC statistics (20 coefficients, librosa defaults) as the hand-crafted
reference, and, with ``--supervised PRESET``, the same encoder trained end to end with
labels for each task (``train.supervised``) as the upper reference.

Prints one JSON line with ``<preset>_<task>_trained``, ``<preset>_<task>_random``,
``mfcc_<task>``, ``supervised_<task>`` (file-level accuracy), the steps and minutes of
every pre-training, and, with ``--representations``, the CPC variants
``<preset>_<task>_trained_<c_last|c_mean|z_mean>``.

Usage:
    python benchmarks/bench_quality.py [--presets a,b] [--minutes 15 | --steps N]
        [--supervised simclr_mel] [--supervised-minutes 8] [--representations] [--work DIR]
Every stage is skipped when its output exists in --work, so a stopped run continues.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FSDD = REPO.parent / "shared" / "data" / "fsdd" / "recordings"
TASKS = {"digit": r"regex:^(\d)_", "speaker": r"regex:^\d_([a-z]+)_"}
DEFAULT_PRESETS = "cpc_conv1d_gru,clmr_samplecnn,cpc_wave,simclr_wave,simclr_mel"


def log(msg: str) -> None:
    print(f"[bench_quality {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def split_fsdd(work: Path) -> tuple[Path, Path]:
    """Symlink folders of the official split: takes 0-4 test, 5-49 train."""
    train, test = work / "audio" / "train", work / "audio" / "test"
    if train.is_dir() and test.is_dir():
        return train, test
    for d in (train, test):
        d.mkdir(parents=True, exist_ok=True)
    for f in sorted(FSDD.glob("*.wav")):
        take = int(f.stem.rsplit("_", 1)[1])
        (test if take <= 4 else train).joinpath(f.name).symlink_to(f.resolve())
    return train, test


def step_seconds(cfg, train_dir: Path, cache_dir: Path, steps: int = 8) -> float:
    """Median seconds of one training step of `cfg` on this machine (real pipeline)."""
    import statistics

    import tensorflow as tf

    from cpc_tf.audio.cache import open_cache
    from cpc_tf.audio.datasets import split_clips, training_dataset
    from cpc_tf.models.registry import model_input_shape
    from cpc_tf.training import compile_model

    cache = open_cache(
        str(train_dir), cfg.data.sample_rate, cache_dir=str(cache_dir), progress=False
    )
    ids = split_clips(cache, cfg).train
    ds = training_dataset(cache, cfg, ids, cfg.train.batch_size, input_shape=model_input_shape(cfg))
    model = compile_model(cfg, total_steps=1000)
    step = tf.function(model.train_step)
    it = iter(ds)
    for _ in range(3):
        step(next(it))
    times = []
    for _ in range(steps):
        batch = next(it)
        t = time.perf_counter()
        float(step(batch)["loss"])
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def cli(*args: str) -> None:
    cmd = [sys.executable, "-m", "cpc_tf", *args]
    log(" ".join(cmd[2:]))
    subprocess.run(cmd, check=True)


def pretrain(
    preset: str, cfg, train_dir: Path, work: Path, minutes: float, steps: int | None
) -> dict:
    """Train `preset` for the budget; returns steps, epochs and minutes."""
    run = work / "runs" / preset
    info_path = work / "runs" / f"{preset}.json"
    if (run / "model.keras").exists() and info_path.exists():
        return json.loads(info_path.read_text())
    per_epoch = max(1, len([p for p in train_dir.iterdir()]) // cfg.train.batch_size)
    if steps is None:
        sec = step_seconds(cfg, train_dir, work / "cache")
        steps = max(1, int(minutes * 60 / sec))
        log(f"{preset}: {sec:.3f} s/step -> {steps} steps in {minutes:g} min")
    epochs = max(1, math.ceil(steps / per_epoch))
    per_epoch = max(1, round(steps / epochs))
    t0 = time.time()
    args = [
        "train",
        "--audio-dir",
        str(train_dir),
        "--config",
        preset,
        "--out",
        str(run),
        "--epochs",
        str(epochs),
        "--set",
        f"train.steps_per_epoch={per_epoch}",
        "--cache-dir",
        str(work / "cache"),
    ]
    if (run / "config.yaml").exists():
        args = ["train", "--out", str(run), "--resume", "--cache-dir", str(work / "cache")]
    cli(*args)
    info = {
        "steps": epochs * per_epoch,
        "epochs": epochs,
        "minutes": round((time.time() - t0) / 60, 1),
    }
    info_path.write_text(json.dumps(info))
    return info


def extract_pair(
    name: str,
    cfg,
    model,
    train_dir: Path,
    test_dir: Path,
    work: Path,
    crops: int,
    run: Path | None = None,
) -> tuple[str, str]:
    """Embeddings of both sides (digit labels; speaker labels are derived from the paths)."""
    from cpc_tf.config import replace_keys
    from cpc_tf.extract import ExtractOptions, extract

    if cfg.eval.crop_mode == "random" and cfg.eval.crops_per_file > crops:
        cfg = replace_keys(cfg, {"eval.crops_per_file": crops})
    out = []
    for side, folder in (("train", train_dir), ("test", test_dir)):
        path = work / "emb" / f"{name}_{side}.npz"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            log(f"extract {name} ({side})")
            extract(
                cfg,
                model,
                ExtractOptions(
                    audio_dir=str(folder),
                    out=str(path),
                    labels=TASKS["digit"],
                    cache_dir=str(work / "cache"),
                    progress=False,
                    run_dir=str(run) if run else None,
                ),
            )
        out.append(str(path))
    return out[0], out[1]


def relabel(path: str, task: str) -> str:
    """A copy of an embeddings file labelled for `task` (labels come from the file names)."""
    import re

    import numpy as np

    if task == "digit":
        return path
    target = path.replace(".npz", f"_{task}.npz")
    if not os.path.exists(target):
        data = dict(np.load(path, allow_pickle=False))
        pattern = re.compile(TASKS[task].split(":", 1)[1])
        data["labels"] = np.array(
            [pattern.search(os.path.basename(p)).group(1) for p in data["paths"]]
        )
        np.savez(target, **data)
    return target


def probe(
    train: str, test: str, baselines: list[tuple[str, str, str]], work: Path, tag: str
) -> dict:
    """File-level accuracy of the model and each baseline, per task."""
    from cpc_tf.config import EvalConfig
    from cpc_tf.evaluation.report import evaluate

    cfg = EvalConfig(tsne_max_points=10)
    out = {}
    for task in TASKS:
        bl = [(n, relabel(a, task), relabel(b, task)) for n, a, b in baselines]
        res = evaluate(
            relabel(train, task),
            cfg,
            work / "reports" / f"{tag}_{task}",
            test_path=relabel(test, task),
            baselines=bl,
        )
        for name, r in res["results"].items():
            out[(name, task)] = round(r["file"]["accuracy"]["mean"], 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", default=DEFAULT_PRESETS)
    ap.add_argument("--minutes", type=float, default=15.0, help="pre-training budget per preset")
    ap.add_argument("--steps", type=int, help="a step budget instead of --minutes")
    ap.add_argument("--crops", type=int, default=4, help="at most this many random crops per file")
    ap.add_argument(
        "--supervised", metavar="PRESET", help="also train PRESET end to end with labels"
    )
    ap.add_argument("--supervised-minutes", type=float, default=8.0)
    ap.add_argument(
        "--representations",
        action="store_true",
        help="also probe c_last, c_mean and z_mean of every CPC preset",
    )
    ap.add_argument("--work", default=str(REPO / "runs" / "bench_quality"))
    args = ap.parse_args()
    if not FSDD.is_dir():
        sys.exit(f"FSDD not found at {FSDD}")

    from cpc_tf.config import load_config, replace_keys, resolve_config_path
    from cpc_tf.extract import ExtractOptions, extract_features
    from cpc_tf.references import random_init_model
    from cpc_tf.training import RunFolder, load_run_model

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    train_dir, test_dir = split_fsdd(work)
    result: dict = {
        "bench": "quality",
        "data": "fsdd official split (2700 train / 300 test files)",
        "probe": "logistic, file-level mean pooling",
    }
    mfcc = []
    for side, folder in (("train", train_dir), ("test", test_dir)):
        path = work / "emb" / f"mfcc_{side}.npz"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            extract_features(
                load_config(),
                ExtractOptions(
                    audio_dir=str(folder),
                    out=str(path),
                    labels=TASKS["digit"],
                    cache_dir=str(work / "cache"),
                    progress=False,
                ),
            )
        mfcc.append(str(path))
    mfcc_ref = ("mfcc", mfcc[0], mfcc[1])

    for preset in [p for p in args.presets.split(",") if p]:
        cfg = load_config(resolve_config_path(preset))
        info = pretrain(preset, cfg, train_dir, work, args.minutes, args.steps)
        result[f"{preset}_steps"], result[f"{preset}_minutes"] = info["steps"], info["minutes"]
        run_cfg = RunFolder(str(work / "runs" / preset)).load_config()
        trained = extract_pair(
            f"{preset}_trained",
            run_cfg,
            load_run_model(str(work / "runs" / preset)),
            train_dir,
            test_dir,
            work,
            args.crops,
            run=work / "runs" / preset,
        )
        random = extract_pair(
            f"{preset}_random", cfg, random_init_model(cfg), train_dir, test_dir, work, args.crops
        )
        scores = probe(*trained, [("random-init", *random), mfcc_ref], work, preset)
        for task in TASKS:
            result[f"{preset}_{task}_trained"] = scores[("model", task)]
            result[f"{preset}_{task}_random"] = scores[("random-init", task)]
            result[f"mfcc_{task}"] = scores[("mfcc", task)]
        log(json.dumps({k: v for k, v in result.items() if k.startswith(preset)}))
        if args.representations and cfg.model.family == "cpc":
            model = load_run_model(str(work / "runs" / preset))
            for kind in ("c_last", "c_mean", "z_mean"):
                variant = replace_keys(run_cfg, {"eval.cpc_representation": kind})
                pair = extract_pair(
                    f"{preset}_trained_{kind}",
                    variant,
                    model,
                    train_dir,
                    test_dir,
                    work,
                    args.crops,
                    run=work / "runs" / preset,
                )
                rpair = extract_pair(
                    f"{preset}_random_{kind}",
                    variant,
                    random_init_model(variant),
                    train_dir,
                    test_dir,
                    work,
                    args.crops,
                )
                s = probe(*pair, [("random-init", *rpair)], work, f"{preset}_{kind}")
                for task in TASKS:
                    result[f"{preset}_{task}_trained_{kind}"] = s[("model", task)]
                    result[f"{preset}_{task}_random_{kind}"] = s[("random-init", task)]

    if args.supervised:
        cfg = load_config(resolve_config_path(args.supervised))
        for task, labels in TASKS.items():
            name = f"supervised_{args.supervised}_{task}"
            run = work / "runs" / name
            if not (run / "model.keras").exists():
                sec = step_seconds(cfg, train_dir, work / "cache")
                steps = max(1, int(args.supervised_minutes * 60 / sec))
                per_epoch = max(1, 2700 // cfg.train.batch_size)
                epochs = max(1, math.ceil(steps / per_epoch))
                cli(
                    "train",
                    "--supervised",
                    "--labels",
                    labels,
                    "--audio-dir",
                    str(train_dir),
                    "--config",
                    args.supervised,
                    "--out",
                    str(run),
                    "--epochs",
                    str(epochs),
                    "--set",
                    f"train.steps_per_epoch={max(1, round(steps / epochs))}",
                    "--cache-dir",
                    str(work / "cache"),
                )
            pair = extract_pair(
                name,
                RunFolder(str(run)).load_config(),
                load_run_model(str(run)),
                train_dir,
                test_dir,
                work,
                args.crops,
                run=run,
            )
            result[f"supervised_{task}"] = probe(*pair, [], work, name)[("model", task)]
            result[f"supervised_{task}_preset"] = args.supervised

    print(json.dumps(result))


if __name__ == "__main__":
    main()
