"""What each CLI subcommand does: arguments in, library calls, a printed summary out.

This is the top of the one-way dependency chain (cli -> commands -> training,
extract, evaluation, tuning -> models, audio -> dsp -> config). Heavy modules are
imported inside each function.
"""

from __future__ import annotations

import argparse
import json
import os

from cpc_tf.config import Config, load_config, resolve_config_path
from cpc_tf.errors import ConfigError


def config_from_args(args: argparse.Namespace, extra: list[str] | None = None) -> Config:
    """Load --config with --set overrides, plus any CLI shortcuts given as `extra`."""
    overrides = list(getattr(args, "overrides", []) or []) + list(extra or [])
    return load_config(resolve_config_path(getattr(args, "config", None)), overrides)


def prepare(args: argparse.Namespace) -> int:
    """Decode a folder once into the cache (or update it) and print what it holds."""
    extra = [] if args.sample_rate is None else [f"data.sample_rate={args.sample_rate}"]
    if getattr(args, "workers", 0) is not None and args.workers < 0:
        raise ConfigError(f"--workers must be 0 (one per core) or more, got {args.workers}")
    cfg = config_from_args(args, extra)
    from cpc_tf.audio.files import check_audio_folder

    check_audio_folder(args.audio_dir)  # fail fast, before TensorFlow loads
    from cpc_tf.audio.cache import open_cache_for
    from cpc_tf.audio.report import prepare_report

    cache = open_cache_for(cfg, args.audio_dir, cache_dir=args.cache_dir, workers=args.workers)
    print("\n".join(prepare_report(cache)))
    return 0


def _train_config(args: argparse.Namespace, run_dir: str) -> Config:
    """The config of a new run, or the saved one of a run being resumed."""
    from cpc_tf.config import replace_keys
    from cpc_tf.training import RunFolder

    run = RunFolder(run_dir)
    if args.resume:
        run.check_target(resume=True)
        if (
            args.config
            or args.overrides
            or getattr(args, "supervised", False)
            or getattr(args, "labels", None)
        ):
            raise ConfigError(
                "--resume continues with the run's saved config; drop --config/--set/"
                "--supervised/--labels (only --epochs may change)"
            )
        cfg = run.load_config()
    else:
        if run.is_run():
            raise ConfigError(
                f"{run_dir} already holds a run; continue it with --resume or pick another --out"
            )
        extra = [f"train.epochs={args.epochs}"] if args.epochs else []
        if args.strategy:
            extra.append(f"train.strategy={args.strategy}")
        if getattr(args, "supervised", False):
            extra.append("train.supervised=true")
        if getattr(args, "labels", None):
            if not getattr(args, "supervised", False):
                raise ConfigError(
                    "train --labels is for --supervised runs; "
                    "self-supervised training uses no labels"
                )
            extra.append(f"data.labels={args.labels}")
        return config_from_args(args, extra)
    changes = {}
    if args.epochs:
        changes["train.epochs"] = args.epochs
    if args.strategy:
        changes["train.strategy"] = args.strategy
    return replace_keys(cfg, changes) if changes else cfg


def train(args: argparse.Namespace) -> int:
    """`cpc_tf train`: pre-train a model into a run folder (or launch local workers)."""
    if args.workers and args.workers > 1:
        from cpc_tf.training.launch import launch_local_workers

        return launch_local_workers(args)
    out = args.out
    if not out:
        if args.resume:
            raise ConfigError("--resume needs --out RUN_DIR, the run to continue")
        name = (
            os.path.splitext(os.path.basename(args.config))[0] if args.config else "cpc_conv1d_gru"
        )
        out = os.path.join("runs", name)
    cfg = _train_config(args, out)
    from cpc_tf.training import RunFolder, TrainOptions
    from cpc_tf.training import train as run_training
    from cpc_tf.training.run_folder import folder_bytes, format_bytes

    audio_dir = args.audio_dir
    cache_dir = args.cache_dir
    if args.resume:
        state = RunFolder(out).read_state()
        audio_dir = audio_dir or state.get("audio_dir")
        done = int(state.get("epochs_completed", 0))
        if state.get("status") == "finished" and done >= cfg.train.epochs:
            print(
                f"cpc_tf: {out} already finished {done} epochs; "
                f"pass --epochs N (> {done}) to train further"
            )
            return 0
        if not cache_dir and not cfg.data.cache_dir and audio_dir and state.get("cache"):
            # Reuse the cache the run started with (--cache-dir is not part of the config)
            # rather than decoding again into the default place; every worker of a
            # multi-worker run must read the same shards.
            from cpc_tf.audio.cache import cache_root

            parent = os.path.dirname(os.path.dirname(state["cache"].rstrip("/")))
            if parent and cache_root(audio_dir, cfg.data.sample_rate, parent) == state["cache"]:
                cache_dir = parent
    if not audio_dir:
        raise ConfigError("train needs --audio-dir DIR (the folder of audio to learn from)")
    # CPC_TF_WORKER_WEIGHTS_DIR (undocumented in --help; docs/multiworker.md): every worker
    # also writes its final weights there, to check that the replicas stayed identical.
    options = TrainOptions(
        run_dir=out,
        audio_dir=audio_dir,
        resume=args.resume,
        cache_dir=cache_dir,
        verbose=1,
        worker_weights_dir=os.environ.get("CPC_TF_WORKER_WEIGHTS_DIR") or None,
        force=getattr(args, "force", False),
    )
    try:
        result = run_training(cfg, options)
    except KeyboardInterrupt:
        return _interrupted(out)
    size = format_bytes(folder_bytes(out))
    print(f"cpc_tf: trained {result.epochs_completed} epoch(s); run folder: {out} ({size})")
    return 0


def _interrupted(out: str) -> int:
    """Ctrl-C during training: one line saying what is kept and how to continue (exit 130)."""
    import sys

    from cpc_tf.training.command import interrupted_message
    from cpc_tf.training.run_folder import RunFolder

    state = RunFolder(out).read_state()
    if state.get("status") != "interrupted":
        raise KeyboardInterrupt  # stopped before training began: cli.py's plain "interrupted"
    if sys.stdout.isatty():
        print(flush=True)  # end the progress bar's line
    print(
        f"cpc_tf: {interrupted_message(out, int(state.get('epochs_completed', 0)))}",
        file=sys.stderr,
    )
    return 130


_RUN_FIXED_KEYS = ("model.", "data.sample_rate", "data.clip_seconds", "data.crop_samples")


def extract(args: argparse.Namespace) -> int:
    """`cpc_tf extract`: embeddings.npz from a run (or a random-init model) over a folder.

    The folder and the label source are checked before the model is loaded, so a typo
    costs no model start-up. With ``--run``, ``--set`` may not change what the trained
    model fixes (``model.*`` and the crop). Skipped files are counted and named.
    """
    from cpc_tf.audio.files import check_audio_folder
    from cpc_tf.audio.labels import parse_label_source

    if args.random_init and not args.config:
        raise ConfigError("--random-init needs --config X.yaml (the architecture to initialise)")
    if args.run and args.config:
        raise ConfigError("--run uses the run's saved config; --config goes with --random-init")
    check_audio_folder(args.audio_dir)
    if args.labels:
        parse_label_source(args.labels, args.audio_dir)
    if args.features:
        if (
            args.pool != "none"
            or args.crop_mode
            or args.hop is not None
            or args.frame_level
            or args.crops_per_file is not None
        ):
            raise ConfigError(
                "--features computes one row of statistics per whole file; drop "
                "--pool/--crop-mode/--hop/--crops-per-file/--frame-level"
            )
        from cpc_tf.extract import ExtractOptions, extract_features

        payload = extract_features(
            config_from_args(args),
            ExtractOptions(
                audio_dir=args.audio_dir,
                out=args.out,
                labels=args.labels,
                cache_dir=args.cache_dir,
                tensorboard=getattr(args, "tensorboard", None),
            ),
            args.features,
        )
        _print_extracted(args.out, payload)
        _print_label_warnings(args.labels, args.audio_dir, payload)
        return 0
    extra = []
    if args.crops_per_file is not None:
        extra.append(f"eval.crops_per_file={args.crops_per_file}")
    if args.crop_mode:
        extra.append(f"eval.crop_mode={args.crop_mode}")
    if args.frame_level:
        extra.append("eval.frame_level=true")
    if args.hop is not None:
        extra.append(f"eval.hop_seconds={args.hop}")
    if args.run:
        from cpc_tf.config import parse_override, replace_keys
        from cpc_tf.training import RunFolder, load_run_model

        changes = dict(parse_override(o) for o in list(args.overrides) + extra)
        fixed = sorted(k for k in changes if k.startswith(_RUN_FIXED_KEYS))
        if fixed:
            raise ConfigError(
                f"--run: {', '.join(fixed)} is fixed by the trained model; --set only "
                "eval.* or data keys that leave the crop unchanged"
            )
        cfg = replace_keys(RunFolder(args.run).load_config(), changes)
        model = load_run_model(args.run)
    else:
        cfg = config_from_args(args, extra)
        from cpc_tf.references import random_init_model

        model = random_init_model(cfg)
    from cpc_tf.extract import ExtractOptions
    from cpc_tf.extract import extract as run_extract

    payload = run_extract(
        cfg,
        model,
        ExtractOptions(
            audio_dir=args.audio_dir,
            out=args.out,
            run_dir=args.run,
            labels=args.labels,
            cache_dir=args.cache_dir,
            tensorboard=getattr(args, "tensorboard", None),
        ),
        pool=args.pool,
    )
    _print_extracted(args.out, payload)
    _print_label_warnings(args.labels, args.audio_dir, payload)
    return 0


def _print_label_warnings(spec: str | None, audio_dir: str, payload: dict) -> None:
    """CSV rows that name no file and files without a row, counted (see cpc_tf.audio.labels)."""
    if not spec:
        return
    from cpc_tf.audio.labels import parse_label_source

    source = parse_label_source(spec, audio_dir)
    source.labels_for(sorted(set(payload["paths"].tolist())))
    for warning in source.warnings:
        print(f"cpc_tf: warning: labels: {warning}")


def export(args: argparse.Namespace) -> int:
    """`cpc_tf export`: a HEAR 2021 module or a SavedModel from a run (see cpc_tf.export)."""
    from cpc_tf.export import ExportOptions, check_out
    from cpc_tf.export import export as run_export

    check_out(args.out, args.force)  # before TensorFlow and the model load
    what = run_export(
        ExportOptions(
            source=args.run,
            out=args.out,
            format=args.format,
            force=args.force,
            name=args.name,
            sample_rate=args.sample_rate,
        )
    )
    print(f"cpc_tf: exported {args.run} to {args.out}: {what}")
    return 0


def _print_extracted(out: str, payload: dict) -> None:
    """What extract wrote, and the skipped files by reason (names escaped for the terminal)."""
    from cpc_tf.audio.report import printable

    n_files = len(set(payload["clip_index"].tolist()))
    labelled = int((payload["labels"] != "").sum())
    n_skipped = len(payload["skipped_paths"])
    print(
        f"cpc_tf: wrote {out}: {len(payload['embeddings'])} embeddings of dim "
        f"{payload['embeddings'].shape[1]} from {n_files} files ({labelled} labelled crops); "
        f"{n_skipped} file{'s' * (n_skipped != 1)} skipped"
    )
    by_reason: dict[str, list[str]] = {}
    for path, reason in zip(payload["skipped_paths"].tolist(), payload["skipped_reasons"].tolist()):
        by_reason.setdefault(reason, []).append(path)
    shown = 5
    for reason, paths in sorted(by_reason.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        more = f", ... and {len(paths) - shown} more" if len(paths) > shown else ""
        print(
            f"  skipped, {printable(reason)} ({len(paths)}): "
            f"{', '.join(map(printable, paths[:shown]))}{more}"
        )


def _parse_baselines(specs: list[str]) -> list[tuple[str, str, str | None]]:
    """``[NAME=]FILE[,TEST]`` → (name, file, test file); the name '' means 'derive it from the
    file'.
    """
    out = []
    for spec in specs:
        name, _, rest = (
            spec.rpartition("=") if "=" in spec and not os.path.exists(spec) else ("", "", spec)
        )
        path, _, test = rest.partition(",")
        if not path:
            raise ConfigError(f"--baseline {spec!r}: expected [NAME=]FILE.npz[,TEST.npz]")
        out.append((name, path, test or None))
    return out


def evaluate(args: argparse.Namespace) -> int:
    """`cpc_tf evaluate`: probe an embeddings file, write REPORT_DIR/{report.md, metrics.json,
    *.png}.

    CLI flags override the config's ``eval`` section (Bajorath et al. 2021, §2.3; Spijkervet &
    Burgoyne 2021, §3.6, §4.4).
    """
    extra: list[str] = []
    if getattr(args, "classifier", None):
        extra.append(f"eval.classifier={args.classifier}")
    if getattr(args, "reduce", None):
        extra.append(f"eval.reduce={args.reduce}")
    if getattr(args, "seeds", None) is not None:
        extra.append(f"eval.seeds={args.seeds}")
    if getattr(args, "folds", None) is not None:
        extra.append(f"eval.folds={args.folds}")
    if getattr(args, "test_fraction", None) is not None:
        extra.append(f"eval.test_fraction={args.test_fraction}")
    if getattr(args, "label_fractions", None):
        try:
            fractions = [float(x) for x in args.label_fractions.replace(" ", "").split(",") if x]
        except ValueError:
            raise ConfigError(
                f"--label-fractions {args.label_fractions!r}: expected numbers "
                "separated by commas, e.g. 0.01,0.1,1"
            ) from None
        if not fractions:
            raise ConfigError("--label-fractions: give at least one fraction, e.g. 0.01,0.1,1")
        extra.append(f"eval.label_fractions=[{', '.join(repr(f) for f in fractions)}]")
    if getattr(args, "pool", None):
        extra.append(f"eval.pool={args.pool}")
    cfg = config_from_args(args, extra).eval

    from cpc_tf.evaluation.embeddings import load_embeddings
    from cpc_tf.evaluation.report import baseline_name
    from cpc_tf.evaluation.report import evaluate as run_evaluate

    def log(msg: str) -> None:
        print(f"cpc_tf: {msg}", flush=True)

    baselines = []
    for name, path, test in _parse_baselines(list(getattr(args, "baseline", []) or [])):
        baselines.append((name or baseline_name(load_embeddings(path)), path, test))
    test_path = getattr(args, "test", None)
    force = bool(getattr(args, "force", False))
    from cpc_tf.evaluation.report_dir import check_report_folder

    check_report_folder(args.out, force)  # before any reference is extracted into it
    notes: list[str] = []
    if getattr(args, "references", "auto") == "auto":
        from cpc_tf.references import auto_references

        for path in [args.embeddings] + ([test_path] if test_path else []):
            load_embeddings(path)  # a broken file fails here, before any extraction
        refs, notes = auto_references(
            args.embeddings, test_path, args.out, {b[0] for b in baselines}, log
        )
        baselines += refs
    result = run_evaluate(
        args.embeddings,
        cfg,
        args.out,
        test_path=test_path,
        folds=cfg.folds if getattr(args, "folds", None) is not None else None,
        test_fraction=getattr(args, "test_fraction", None),
        group_by=getattr(args, "group_by", None),
        baselines=baselines,
        progress=log,
        notes=notes,
        force=force,
    )
    _print_headline(result)
    for note in notes:
        print(f"cpc_tf: note: {note}")
    for warning in result["warnings"]:
        print(f"cpc_tf: warning: {warning}")
    print(
        f"cpc_tf: report: {os.path.join(args.out, 'report.md')} "
        "(metrics.json and figures beside it)"
    )
    return 0


def _print_headline(result: dict) -> None:
    """The task, the split and the headline table (model against its baselines, with the spread)."""
    from cpc_tf.evaluation.report_md import headline_table

    print(
        f"cpc_tf: {result['task']}, {len(result['classes'])} classes; "
        f"{result['split']['description']}"
    )
    for line in headline_table(result):
        print(f"  {line}")


def tune(args: argparse.Namespace) -> int:
    """`cpc_tf tune`: run a hyper-parameter sweep into a sweep folder."""
    from cpc_tf.training.run_folder import check_output_folder
    from cpc_tf.tuning import run_sweep
    from cpc_tf.tuning.run import STATE_FILE

    owned = getattr(args, "force", False) or os.path.isfile(os.path.join(args.out, STATE_FILE))
    check_output_folder(args.out, owned=owned, what="a cpc_tf sweep folder")

    rows = run_sweep(
        resolve_config_path(args.config),
        args.audio_dir,
        args.out,
        overrides=args.overrides,
        max_trials=args.max_trials,
        tuner_name=args.tuner,
        strategy_name=args.strategy,
        labels=args.labels,
        cache_dir=args.cache_dir,
    )
    done = sum(1 for r in rows if r["status"] == "COMPLETED")
    failed = sum(1 for r in rows if r["status"] == "FAILED")
    results = os.path.join(args.out, "results.md")
    if os.path.exists(os.path.join(args.out, "best.yaml")):
        where = f"see {results} and best.yaml"
    else:
        where = f"no trial beats chance (no best.yaml); see {results}"
    print(f"cpc_tf: sweep in {args.out}: {done} completed, {failed} failed trial(s); {where}")
    return 0


def summary(args: argparse.Namespace) -> int:
    """`cpc_tf summary`: print the parameter counts of the configured model."""
    cfg = config_from_args(args)
    from cpc_tf.models.summary import component_counts, format_counts

    print(format_counts(cfg, component_counts(cfg)))
    return 0


def demo(args: argparse.Namespace) -> int:
    """`cpc_tf demo`: run the whole pipeline on a small synthetic set; print the headline."""
    from cpc_tf.demo import run_demo

    report = run_demo(args.out, epochs=args.epochs)
    with open(os.path.join(os.path.dirname(report), "metrics.json"), encoding="utf-8") as fh:
        _print_headline(json.load(fh))
    print(f"cpc_tf: demo finished; report: {report}")
    return 0
