"""The reference rows of every report: the same architecture at random init, and MFCCs.

A trained representation means little on its own. ``cpc_tf evaluate`` therefore puts
two references beside it unless they are given (or ``--references none``):

* **random-init**: the model's own architecture, randomly initialised with the
  training seed (so the row shows what pre-training added; Bajorath et al. 2021 §3.2
  got 28 % trained against 20 % random);
* **mfcc**: the mean and standard deviation of 20 MFCCs per file
  (:mod:`cpc_tf.features`), the hand-crafted baseline a learned representation has to
  beat.

Both are extracted from the audio folder recorded in the embeddings file, with its
label source and its extraction settings, into ``REPORT_DIR/references/``; a later
evaluation reuses them when the folder and the settings are unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from cpc_tf.config import Config, from_dict, parse_yaml
from cpc_tf.errors import DataError

#: (name, training-side file, test-side file or None)
Reference = tuple[str, str, "str | None"]


def _meta(path: str) -> dict[str, str]:
    """The provenance arrays of an embeddings file ('' when absent)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {
                k: str(npz[k][()]) if k in npz.files else ""
                for k in ("run", "config", "audio_dir", "label_source")
            }
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None


def _config_of(meta: dict[str, str]) -> Config | None:
    if not meta["config"]:
        return None
    try:
        return from_dict(parse_yaml(meta["config"], "the config stored in the embeddings"))
    except Exception:  # noqa: BLE001  (an unreadable config only means no random-init row)
        return None


def _up_to_date(path: str, audio_dir: str, config: str) -> bool:
    if not os.path.isfile(path):
        return False
    meta = _meta(path)
    return meta["audio_dir"] == audio_dir and meta["config"] == config


def auto_references(
    emb_path: str,
    test_path: str | None,
    out_dir: str,
    have: set[str],
    log: Callable[[str], None],
    progress: bool = True,
) -> tuple[list[Reference], list[str]]:
    """Extract the missing references for an evaluation; returns them and notes on what was skipped.

    ``have`` holds the names of the baselines already given (``random-init``, ``mfcc``).
    """
    from cpc_tf.extract import ExtractOptions, extract, extract_features

    main = _meta(emb_path)
    sides = [main] + ([_meta(test_path)] if test_path else [])
    notes: list[str] = []
    if any(not m["audio_dir"] for m in sides):
        return [], [
            "no reference rows: the embeddings file does not record its audio folder "
            "(extracted by an older cpc_tf); give --baseline files instead"
        ]
    if any(not os.path.isdir(m["audio_dir"]) for m in sides):
        missing = next(m["audio_dir"] for m in sides if not os.path.isdir(m["audio_dir"]))
        return [], [
            f"no reference rows: the audio folder {missing} recorded in the embeddings is gone"
        ]
    cfg = _config_of(main)
    folder = os.path.join(out_dir, "references")
    os.makedirs(folder, exist_ok=True)
    refs: list[Reference] = []
    wanted = []
    is_trained = main["run"] not in ("random-init",) and not main["run"].startswith("features:")
    if "random-init" not in have and is_trained:
        if cfg is None:
            notes.append("no random-init row: the embeddings file carries no readable config")
        else:
            wanted.append("random-init")
    if "mfcc" not in have and not main["run"].startswith("features:"):
        wanted.append("mfcc")
    for name in wanted:
        paths = []
        for side, meta in zip(("", "_test"), sides):
            out = os.path.join(folder, f"{name}{side}.npz")
            base_cfg = cfg if cfg is not None else Config()
            config_text = "" if name == "mfcc" else main["config"]
            if _up_to_date(out, meta["audio_dir"], config_text):
                log(f"reference {name}{side}: reusing {out}")
            else:
                log(f"reference {name}{side}: extracting from {meta['audio_dir']}")
                options = ExtractOptions(
                    audio_dir=meta["audio_dir"],
                    out=out,
                    labels=meta["label_source"] or None,
                    progress=progress,
                )
                if name == "mfcc":
                    extract_features(base_cfg, options, "mfcc")
                else:
                    extract(base_cfg, random_init_model(base_cfg), options)
            paths.append(out)
        refs.append((name, paths[0], paths[1] if len(paths) > 1 else None))
    return refs, notes


def random_init_model(cfg: Config):  # noqa: ANN201  (a keras.Model; keras is imported lazily)
    """The config's architecture, randomly initialised with the training seed."""
    import keras

    from cpc_tf.config import replace_keys
    from cpc_tf.models.factory import build_model

    if cfg.train.supervised:  # the reference is the architecture, without the supervised head
        cfg = replace_keys(cfg, {"train.supervised": False})
    keras.utils.set_random_seed(cfg.train.seed)
    return build_model(cfg)
