"""The probe objective of a sweep: linear-probe accuracy of a trial's embeddings."""

from __future__ import annotations

import keras

from cpc_tf.config import Config
from cpc_tf.errors import DataError

PROBE_OBJECTIVE = "probe_acc"


def probe_accuracy(model: keras.Model, cfg: Config, audio_dir: str, labels: str, cache_dir: str | None) -> float:
    """Linear-probe accuracy of the trial's embeddings on a file-level split (labels needed)."""
    import numpy as np

    from cpc_tf.audio.cache import open_cache
    from cpc_tf.audio.labels import parse_label_source
    from cpc_tf.evaluation.probe import train_probe
    from cpc_tf.evaluation.splits import split_by_file
    from cpc_tf.extract import extract_embeddings

    cache = open_cache(audio_dir, cfg.data.sample_rate, cache_dir=cache_dir or cfg.data.cache_dir or None,
                       workers=cfg.data.decode_workers, progress=False, min_shards=cfg.data.min_shards,
                       shard_seconds=cfg.data.shard_seconds)
    arrays = extract_embeddings(model, cfg, cache, progress=False)
    source = parse_label_source(labels, audio_dir)
    by_id = {c.clip_id: c.path for c in cache.clips}
    paths = np.array([by_id[int(i)] for i in arrays["clip_id"]])
    y = np.array(source.labels_for(paths.tolist()))
    keep = y != ""
    x, y, paths = arrays["embeddings"][keep], y[keep], paths[keep]
    if len(set(y.tolist())) < 2:
        raise DataError(f"--labels {labels}: fewer than two classes among the files")
    train_idx, test_idx = split_by_file(paths, y, test_fraction=cfg.eval.test_fraction, seed=cfg.eval.seed)
    result = train_probe(x[train_idx], y[train_idx], x[test_idx], y[test_idx], cfg.eval,
                         train_files=paths[train_idx])
    return float(result.accuracy)

