"""The `cpc_tf` command line: one thin argparse front over the library.

Every subcommand imports its module lazily, so `cpc_tf --help` is instant and
TensorFlow is loaded only by commands that need it. Errors derived from
:class:`~cpc_tf.errors.CpcTfError` end in one line on stderr and their exit code
(2 for usage and config mistakes, 1 for data problems); never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from cpc_tf import __version__
from cpc_tf.errors import ConfigError, CpcTfError


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors raise ConfigError (exit 2, one line)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"{self.prog}: {message}")


def quiet_tensorflow(verbose: bool) -> None:
    """Hide TensorFlow's C++ and absl log noise unless --verbose is given.

    Must run before TensorFlow is imported for the C++ level to take effect.
    """
    if verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    import logging
    import warnings

    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*does not have valid feature names.*")
    _import_tensorflow_silently()


def _import_tensorflow_silently() -> None:
    """Import TensorFlow with file descriptor 2 pointed at a temporary file.

    TensorFlow >= 2.20 prints oneDNN/CUDA notices through absl *before* its log level
    is read, so no environment variable hides them. What was printed is replayed if
    the import fails, so a broken installation still explains itself.
    """
    import tempfile

    try:
        saved = os.dup(2)
    except OSError:  # no usable stderr: nothing to hide
        return
    with tempfile.TemporaryFile() as tmp:
        sys.stderr.flush()
        os.dup2(tmp.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            tmp.seek(0)
            sys.stderr.write(tmp.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


# ---------------------------------------------------------------- handlers
def _run_command(args: argparse.Namespace) -> int:
    """Run a subcommand: its handler is the function of the same name in
    :mod:`cpc_tf.commands`, imported only now (``--help`` stays instant).
    """
    from cpc_tf import commands

    handler: Callable[[argparse.Namespace], int] = getattr(commands, args.command)
    return handler(args)


# ------------------------------------------------------------------ parser
def _add_config_args(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument(
        "--config",
        metavar="X.yaml",
        required=required,
        help="a preset from configs/ or your own YAML",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        metavar="key=value",
        action="append",
        default=[],
        help="override one config key, e.g. --set train.learning_rate=3e-4 (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used by the docs tests)."""
    common = _Parser(add_help=False)
    common.add_argument("--verbose", action="store_true", help="show TensorFlow's own log messages")

    parser = _Parser(
        prog="cpc_tf",
        parents=[common],
        description="Self-supervised audio representation learning "
        "(CPC, SimCLR/CLMR, TUNe) with Keras 3 and TensorFlow.",
    )
    parser.add_argument("--version", action="version", version=f"cpc_tf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], help=help_, description=help_)

    p = add("prepare", "decode a folder of audio once into the sharded cache")
    p.add_argument("--audio-dir", required=True, metavar="DIR")
    p.add_argument("--config", metavar="X.yaml", help="take the sample rate from this config")
    p.add_argument("--set", dest="overrides", metavar="key=value", action="append", default=[])
    p.add_argument(
        "--sample-rate", type=int, metavar="SR", help="target rate in Hz (overrides --config)"
    )
    p.add_argument(
        "--cache-dir", metavar="DIR", help="where the cache lives (default ~/.cache/cpc_tf)"
    )
    p.add_argument("--workers", type=int, default=0, help="decoding processes (0 = one per core)")

    p = add("train", "pre-train a CPC or SimCLR model on a folder of audio")
    p.add_argument("--audio-dir", metavar="DIR", help="training audio (required unless --resume)")
    _add_config_args(p)
    p.add_argument("--out", metavar="RUN_DIR", help="run folder (default runs/<config name>)")
    p.add_argument("--epochs", type=int, metavar="N", help="shortcut for --set train.epochs=N")
    p.add_argument(
        "--strategy",
        choices=["auto", "none", "mirrored", "multiworker"],
        help="tf.distribute strategy (default from the config: auto)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run in --out from its last completed epoch",
    )
    p.add_argument(
        "--supervised",
        action="store_true",
        help="train the encoder and a linear head on --labels with cross-entropy "
        "(the supervised reference) instead of the self-supervised loss",
    )
    p.add_argument(
        "--labels",
        metavar="SOURCE",
        help="with --supervised: folder | regex:PATTERN | csv:PATH (default data.labels)",
    )
    p.add_argument(
        "--label-column",
        metavar="COLUMN",
        help="with --labels csv:PATH: the column that holds the labels (default: label/labels)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="launch N local worker processes on 127.0.0.1 (multi-worker trial)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="train into --out even if it is a non-empty folder that is not a cpc_tf run",
    )
    p.add_argument("--cache-dir", metavar="DIR", help="where the decoded cache lives")

    p = add("extract", "write embeddings.npz from a trained (or random-init) model")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--run", metavar="RUN_DIR", help="a run folder written by train")
    g.add_argument(
        "--random-init",
        action="store_true",
        help="a randomly initialised model of --config (the baseline)",
    )
    g.add_argument(
        "--features",
        choices=["mfcc", "logmel"],
        help="hand-crafted statistics per file instead of a model (the MFCC reference)",
    )
    _add_config_args(p)
    p.add_argument("--audio-dir", required=True, metavar="DIR")
    p.add_argument("--out", required=True, metavar="FILE.npz")
    p.add_argument(
        "--crops-per-file", type=int, metavar="N", help="default 10 (Bajorath et al. 2021, §2.3)"
    )
    p.add_argument(
        "--crop-mode", choices=["random", "sliding"], help="random crops or sliding chunks"
    )
    p.add_argument(
        "--hop",
        type=float,
        metavar="SECONDS",
        help="sliding chunks: seconds between chunk starts (default: the chunk length)",
    )
    p.add_argument(
        "--pool",
        choices=["none", "mean", "mean_std"],
        default="none",
        help="write one row per file: the mean (or mean and std) of its crop embeddings",
    )
    p.add_argument("--labels", metavar="SOURCE", help="folder | regex:PATTERN | csv:PATH")
    p.add_argument(
        "--label-column",
        metavar="COLUMN",
        help="with --labels csv:PATH: the column that holds the labels (default: label/labels)",
    )
    p.add_argument("--frame-level", action="store_true", help="also store frame-level features")
    p.add_argument("--cache-dir", metavar="DIR")
    p.add_argument(
        "--tensorboard",
        metavar="DIR",
        help="also write the embeddings, metadata.tsv and a projector config into DIR "
        "for TensorBoard's Embedding Projector (tensorboard --logdir DIR)",
    )

    p = add("export", "package a trained model: a HEAR 2021 module or a TF SavedModel")
    p.add_argument(
        "--run",
        required=True,
        metavar="RUN_DIR",
        help="a run folder, a cpc_tf .keras file or a folder written by export",
    )
    p.add_argument(
        "--format",
        choices=["hear", "savedmodel"],
        default="hear",
        help="hear: a pip-installable HEAR 2021 module; savedmodel: model.export()'s SavedModel",
    )
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument(
        "--name",
        metavar="PACKAGE",
        help="hear: the package name (default cpc_tf_hear_<config name>)",
    )
    p.add_argument(
        "--sample-rate",
        type=int,
        metavar="SR",
        help="hear: the input rate to declare (default: the smallest HEAR rate at or above "
        "the model's; audio is resampled inside)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty --out (files of the same names are replaced, others kept)",
    )

    p = add("evaluate", "probe embeddings: metrics, plots, baseline, report")
    p.add_argument("--embeddings", required=True, metavar="FILE.npz")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--test", metavar="FILE.npz", help="a separate test set")
    g.add_argument("--folds", type=int, metavar="K", help="K-fold cross-validation by file")
    g.add_argument(
        "--test-fraction", type=float, metavar="F", help="hold out this fraction of files"
    )
    p.add_argument(
        "--group-by",
        metavar="regex:PATTERN",
        help="keep files of one group (artist, speaker) on one side of every split",
    )
    p.add_argument(
        "--baseline",
        metavar="[NAME=]FILE.npz[,TEST.npz]",
        action="append",
        default=[],
        help="another representation of the same files to compare with (repeatable); "
        "with --test, TEST.npz holds its test side",
    )
    p.add_argument(
        "--references",
        choices=["auto", "none"],
        default="auto",
        help="auto: add the random-init and MFCC rows (extracted into REPORT_DIR/references) "
        "when no --baseline gives them",
    )
    p.add_argument(
        "--pool",
        choices=["mean", "mean_std", "none"],
        help="file-level features: pool each file's crop embeddings (default mean)",
    )
    p.add_argument("--label-fractions", metavar="0.01,0.1,1", help="data-efficiency curve")
    p.add_argument("--reduce", choices=["none", "autoencoder"])
    p.add_argument(
        "--classifier",
        choices=["logistic", "linear", "mlp"],
        help="logistic (default, trained to convergence), linear (Table 5 of Bajorath et al. "
        "2021) or mlp",
    )
    p.add_argument("--seeds", type=int, metavar="N", help="repeat the probe with N seeds")
    _add_config_args(p)
    p.add_argument("--out", required=True, metavar="REPORT_DIR")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace REPORT_DIR even when it holds files that are not a cpc_tf report",
    )

    p = add("tune", "sweep hyperparameters with Keras Tuner")
    p.add_argument("--audio-dir", required=True, metavar="DIR")
    p.add_argument("--config", required=True, metavar="sweep_X.yaml")
    p.add_argument("--set", dest="overrides", metavar="key=value", action="append", default=[])
    p.add_argument("--out", required=True, metavar="TUNE_DIR")
    p.add_argument("--max-trials", type=int, metavar="N")
    p.add_argument("--tuner", choices=["random", "bayesian", "hyperband"])
    p.add_argument("--labels", metavar="SOURCE", help="optimise downstream probe accuracy instead")
    p.add_argument(
        "--label-column",
        metavar="COLUMN",
        help="with --labels csv:PATH: the column that holds the labels (default: label/labels)",
    )
    p.add_argument("--strategy", choices=["auto", "none", "mirrored"])
    p.add_argument("--cache-dir", metavar="DIR")
    p.add_argument(
        "--force",
        action="store_true",
        help="sweep into --out even if it is a non-empty folder that is not a cpc_tf sweep",
    )

    p = add("summary", "parameter counts of a config, per component")
    _add_config_args(p, required=True)

    p = add("demo", "synthesise a small labelled audio set and run the whole pipeline")
    p.add_argument("--out", default="cpc_tf_demo", metavar="DIR")
    p.add_argument(
        "--epochs", type=int, metavar="N", help="pre-training epochs (default: the demo's)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `cpc_tf` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "command", None):
            parser.print_help()
            return 2
        args.raw_argv = argv
        if hasattr(args, "label_column"):
            from cpc_tf.audio.labels import with_label_column

            args.labels = with_label_column(args.labels, args.label_column)
        quiet_tensorflow(args.verbose)
        return int(_run_command(args) or 0)
    except CpcTfError as exc:
        print(f"cpc_tf: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("cpc_tf: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
