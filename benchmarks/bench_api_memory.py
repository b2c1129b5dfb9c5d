"""Peak memory of the Python API on a 20-minute sound (the bound promised in docs/api.md).

A child process builds the seed-default CPC (configs/cpc_conv1d_gru.yaml, 4 s chunks at
4410 Hz, Conv1D + GRU, randomly initialised: the weights do not change the cost), decodes
one file of ../shared/data/recordings with cpc_tf's reader, loops it in memory to 20
minutes, and runs ``Embedder.embed`` and ``Embedder.embed_frames`` on it. It reports its
own peak resident memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``), which covers
TensorFlow, the model, the sound and every batch.

Prints one JSON line:

    {"bench": "api_memory", "minutes": 20.0, "peak_rss_gib": ..., "embed_s": ..., ...}

Usage: python benchmarks/bench_api_memory.py [--minutes M] [--file PATH]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECORDINGS = REPO.parent / "shared" / "data" / "recordings"

_CHILD = r"""
import json, resource, sys, time
import numpy as np
from cpc_tf.api import Embedder
from cpc_tf.audio.files import decode_audio
from cpc_tf.config import load_config, resolve_config_path
from cpc_tf.references import random_init_model

minutes, path = float(sys.argv[1]), sys.argv[2]
cfg = load_config(resolve_config_path("cpc_conv1d_gru"))
embedder = Embedder(random_init_model(cfg), cfg)
clip = decode_audio(path, embedder.sample_rate).samples
want = int(minutes * 60 * embedder.sample_rate)
audio = np.tile(clip, -(-want // len(clip)))[:want]
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.time()
vector = embedder.embed(audio, embedder.sample_rate)
embed_s = time.time() - t
t = time.time()
frames, times = embedder.embed_frames(audio, embedder.sample_rate, hop_seconds=0.05)
frames_s = time.time() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
print(json.dumps({"bench": "api_memory", "minutes": minutes, "file": path,
                  "samples": int(len(audio)),
                  "sample_rate": embedder.sample_rate, "embedding": list(vector.shape),
                  "frames": list(frames.shape), "peak_rss_gib": round(peak / 2**20, 3),
                  "rss_before_embedding_gib": round(base / 2**20, 3),
                  "embed_s": round(embed_s, 1), "embed_frames_s": round(frames_s, 1),
                  "batch_size": embedder.batch_size}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument(
        "--file", help="the audio file to loop (default: the first of ../shared/data/recordings)"
    )
    args = parser.parse_args()
    path = args.file or str(
        min(p for p in RECORDINGS.iterdir() if p.suffix in (".ogg", ".wav", ".flac"))
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(args.minutes), path],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        sys.exit(out.stderr[-3000:])
    print(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
