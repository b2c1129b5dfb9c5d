"""`cpc_tf demo`: synthesise a small labelled music set and run the whole pipeline on it.

    DIR/audio/<class>/*.wav    4 synthetic classes (cpc_tf.synth), 50 clips of 3 s each:
                               rising and falling pitch glides, ascending and descending
                               scales; each class is another's time reverse, so only the
                               order of the frames tells them apart
    DIR/run/                   the recommended CPC (configs/cpc_wave.yaml), demo-sized,
                               pre-trained on them without labels
    DIR/embeddings.npz         clip embeddings of the trained model
    DIR/random_init.npz        the same architecture at random init
    DIR/mfcc.npz               MFCC statistics per file (the hand-crafted reference)
    DIR/report/report.md       logistic probe, 4-fold cross-validation by file: trained vs
                               random init vs MFCC, each with its spread

Running it again reuses what is already there (a finished run is not retrained, an
interrupted one is resumed), so it is cheap to re-run after changing the evaluation.
"""

from __future__ import annotations

import os
import time
from typing import Any

from cpc_tf.config import Config, load_config, replace_keys
from cpc_tf.synth import TEMPORAL_CLASSES, SynthSpec, write_dataset

DEMO_EPOCHS = 20  # 500 steps: about 4 minutes on 2 CPU cores
DEMO_STEPS_PER_EPOCH = 25
DEMO_FOLDS = 4
# Classes that random features do not separate well and MFCC statistics not at all: the
# instruments of cpc_tf.synth are separated by any representation, random init included.
DEMO_SPEC = SynthSpec(classes=TEMPORAL_CLASSES, files_per_class=50, seconds=3.0, sample_rate=16000)


def demo_config(epochs: int) -> Config:
    """The recommended CPC (configs/cpc_wave.yaml) at half width, with a demo-sized schedule.

    128 channels instead of 256 and a higher peak learning rate (1e-3, warm-up over 30
    steps) let 500 steps on two CPU cores learn; the objective, the per-frame norm
    and the clip representation (mean of c_t over 1 s chunks) are the preset's.
    """
    from cpc_tf.config import resolve_config_path

    cfg = load_config(resolve_config_path("cpc_wave"))
    return replace_keys(
        cfg,
        {
            "name": "demo_cpc_wave",
            "train.epochs": epochs,
            "train.steps_per_epoch": DEMO_STEPS_PER_EPOCH,
            "train.learning_rate": 1e-3,
            "train.warmup_steps": 30,
            "model.c_dim": 128,
            "model.frame.filters": 128,
            "model.frame.dim": 128,
            "data.validation_fraction": 0.0,
        },
    )


def run_demo(
    out: str,
    epochs: int | None = None,
    spec: SynthSpec = DEMO_SPEC,
    verbose: int = 1,
    folds: int = DEMO_FOLDS,
) -> str:
    """Run the demo into `out`; returns the path of report.md."""
    from cpc_tf.evaluation.report import evaluate
    from cpc_tf.extract import ExtractOptions, extract, extract_features
    from cpc_tf.references import random_init_model
    from cpc_tf.training import RunFolder, TrainOptions, load_run_model, train

    t0 = time.time()
    audio_dir = os.path.join(out, "audio")
    cache_dir = os.path.join(out, "cache")
    paths = write_dataset(audio_dir, spec)
    if verbose:
        print(
            f"cpc_tf demo: {len(paths)} synthetic clips in {len(spec.classes)} classes "
            f"under {audio_dir}"
        )
    cfg = demo_config(epochs or DEMO_EPOCHS)
    run = RunFolder(os.path.join(out, "run"))
    state = run.read_state()
    if (
        state.get("status") != "finished"
        or int(state.get("epochs_completed", 0)) < cfg.train.epochs
    ):
        resume = run.is_run()
        if resume:
            cfg = replace_keys(run.load_config(), {"train.epochs": cfg.train.epochs})
        train(
            cfg,
            TrainOptions(
                run_dir=run.root,
                audio_dir=audio_dir,
                resume=resume,
                cache_dir=cache_dir,
                verbose=verbose,
            ),
        )
    elif verbose:
        print(f"cpc_tf demo: reusing the finished run in {run.root}")

    emb = os.path.join(out, "embeddings.npz")
    random_init = os.path.join(out, "random_init.npz")
    mfcc = os.path.join(out, "mfcc.npz")
    options: dict[str, Any] = dict(
        audio_dir=audio_dir, labels="folder", cache_dir=cache_dir, progress=verbose > 0
    )
    extract(cfg, load_run_model(run.root), ExtractOptions(out=emb, run_dir=run.root, **options))
    extract(cfg, random_init_model(cfg), ExtractOptions(out=random_init, **options))
    extract_features(cfg, ExtractOptions(out=mfcc, **options), "mfcc")

    report_dir = os.path.join(out, "report")
    evaluate(
        emb,
        cfg.eval,
        report_dir,
        folds=folds,
        seeds=1,
        baselines=[("random-init", random_init, None), ("mfcc", mfcc, None)],
    )
    if verbose:
        print(f"cpc_tf demo: done in {time.time() - t0:.0f} s")
    return os.path.join(report_dir, "report.md")
