"""Multi-worker training for real: two worker processes on 127.0.0.1 (issue #9).

* ``cpc_tf train --workers 2`` trains a tiny CPC and a tiny SimCLR for 2 epochs; both
  workers end with bit-identical weights (optimizer state included), equal to the
  chief's ``model.keras``, and nothing is left in the temporary folder.
* One step on a fixed global batch, split across the two workers, gives the loss and
  the updated weights of one process holding the whole batch: the negatives are
  gathered from both workers, BatchNorm statistics are global, gradients are averaged.
  The workers start from different seeds, so equal initial weights also prove that
  MultiWorkerMirroredStrategy broadcasts the chief's initial values.
* A worker (the chief, or worker 1) killed with SIGKILL during epoch 2 makes the
  launcher stop the other one; ``cpc_tf train --workers 2 --out RUN --resume`` finishes
  the run and history.csv has every epoch exactly once, the completed one unchanged.

Every process is bounded: subprocess timeouts, a low collective timeout
(CPC_TF_COLLECTIVE_TIMEOUT), and the launcher's workers die with the launcher. Traffic
stays on 127.0.0.1 (the launcher's TF_CONFIG, and `tf_config` below).

This file is also the probe worker: ``python tests/test_multiworker.py probe OUT``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY_CPC, TINY_SIMCLR, set_flags, synth_folder, tiny_config

pytestmark = pytest.mark.multiworker

COLLECTIVE_TIMEOUT_S = 30  # a lost peer fails a collective after this, not the default 600 s
RUN_TIMEOUT_S = 180  # one `cpc_tf train --workers 2` (TensorFlow start-up, tracing, 2 epochs)
PROBE_BATCH = 8  # the fixed global batch of the one-step check: 4 examples per worker


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    """The environment of every process started here: CPU only, quiet, bounded, own TMPDIR."""
    tmp.mkdir(parents=True, exist_ok=True)
    return dict(
        os.environ,
        CPC_TF_COLLECTIVE_TIMEOUT=str(COLLECTIVE_TIMEOUT_S),
        TF_CPP_MIN_LOG_LEVEL="3",
        CUDA_VISIBLE_DEVICES="",
        TMPDIR=str(tmp),
        **extra,
    )


def _launch(
    *args: str, env: dict[str, str], timeout: int = RUN_TIMEOUT_S
) -> subprocess.CompletedProcess:
    """`cpc_tf train --workers 2 ARGS`; the workers die with the launcher if it times out."""
    return subprocess.run(
        [sys.executable, "-m", "cpc_tf", "train", "--workers", "2", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _history(run: Path) -> list[dict[str, str]]:
    path = run / "history.csv"
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _h5_arrays(source: str | Path | bytes) -> dict[str, np.ndarray]:
    """Every dataset of a Keras weights file (a path, or the bytes of one), by path."""
    import h5py

    arrays: dict[str, np.ndarray] = {}
    with h5py.File(io.BytesIO(source) if isinstance(source, bytes) else source, "r") as fh:
        fh.visititems(
            lambda name, obj: (
                arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
            )
        )
    return arrays


def _max_abs_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    assert sorted(a) == sorted(b), "the two files hold different variables"
    return max(
        float(np.max(np.abs(np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64))))
        if np.size(a[k])
        else 0.0
        for k in a
    )


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory) -> Path:
    return synth_folder(tmp_path_factory.mktemp("audio"), files=4)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


# ------------------------------------------------------------------ 2 epochs, 2 workers
@pytest.mark.parametrize("family", ["cpc", "simclr"])
def test_two_workers_end_with_identical_weights(family, audio_dir, cache_dir, tmp_path):
    base = TINY_CPC if family == "cpc" else TINY_SIMCLR
    # CPC also validates (2 of the 8 files), so Trainer.evaluate runs on both workers too.
    extra = ["--set", "data.validation_fraction=0.25"] if family == "cpc" else []
    run, weights, tmp = tmp_path / "run", tmp_path / "weights", tmp_path / "tmp"
    out = _launch(
        "--audio-dir",
        str(audio_dir),
        "--out",
        str(run),
        "--cache-dir",
        str(cache_dir),
        *set_flags(base),
        *extra,
        env=_env(tmp, CPC_TF_WORKER_WEIGHTS_DIR=str(weights)),
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "2 replica(s), global batch 4" in out.stdout
    rows = _history(run)
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    if extra:
        assert all(np.isfinite(float(r["val_loss"])) for r in rows)
    assert json.loads((run / "run.json").read_text())["replicas"] == 2
    # Bit-identical on both workers, and what the chief saved is what they hold.
    chief, other = (
        _h5_arrays(weights / "worker_0.weights.h5"),
        _h5_arrays(weights / "worker_1.weights.h5"),
    )
    assert any(k.startswith("optimizer/") for k in chief)  # Adam's moments are compared too
    assert _max_abs_diff(chief, other) == 0.0
    with zipfile.ZipFile(run / "model.keras") as zf:
        saved = _h5_arrays(zf.read("model.weights.h5"))
    assert _max_abs_diff(saved, chief) == 0.0
    # The non-chief's scratch folder and the launcher's session folder are gone.
    assert os.listdir(tmp) == []


# ------------------------------------------------------------------ one step, fixed batch
def _probe_configs(seed: int) -> dict:
    """Tiny CPC and SimCLR for the one-step check: plain SGD, no dropout, synchronized BN.

    Plain SGD: Adam would turn float noise in gradients that are mathematically zero
    (conv biases feeding BatchNorm) into full-size steps of random sign.
    """
    train = {
        "optimizer": "sgd",
        "beta_1": 0.0,
        "learning_rate": 0.05,
        "batch_size": PROBE_BATCH,
        "seed": seed,
    }
    model = {"synchronized_bn": True}
    return {
        "cpc": tiny_config(TINY_CPC, train=train, model=model),
        "simclr": tiny_config(TINY_SIMCLR, train=train, model=model, augment={"enabled": False}),
    }


def _probe_batch(family: str):
    """The fixed global batch (random audio; SimCLR: two noisy versions of each clip)."""
    rng = np.random.default_rng(11)
    if family == "cpc":
        return rng.normal(size=(PROBE_BATCH, 6, 800)).astype("float32")
    clip = rng.normal(size=(PROBE_BATCH, 2187)).astype("float32")
    return (
        clip + 0.3 * rng.normal(size=clip.shape).astype("float32"),
        clip + 0.3 * rng.normal(size=clip.shape).astype("float32"),
    )


def _fixed_batch_fn(batch):
    """A dataset_fn giving each input pipeline its rows of `batch`, forever.

    Pipeline i gets rows [i * per, (i + 1) * per): replica i's local batch, the order in
    which the losses gather candidates, so two workers see exactly the global batch.
    """
    import tensorflow as tf

    def dataset_fn(ctx, epoch, training):
        per = ctx.get_per_replica_batch_size(PROBE_BATCH)
        lo = ctx.input_pipeline_id * per
        local = (
            tuple(a[lo : lo + per] for a in batch)
            if isinstance(batch, tuple)
            else batch[lo : lo + per]
        )
        return tf.data.Dataset.from_tensors(local).repeat()

    return dataset_fn


def _two_steps(cfg, strategy, batch) -> dict[str, np.ndarray]:
    """Build the model under `strategy`, take two steps on `batch`; initial and final weights."""
    from cpc_tf.training import Trainer, compile_model

    model = compile_model(cfg, strategy)
    result = {f"init_{i}": w for i, w in enumerate(model.get_weights())}
    trainer = Trainer(model, strategy, _fixed_batch_fn(batch))
    batches = iter(trainer._dist(0, True))
    for step in range(2):
        for name, value in trainer.train_fn(next(batches)).items():
            result[f"step{step}_{name}"] = np.asarray(float(value))
    result.update({f"final_{i}": w for i, w in enumerate(model.get_weights())})
    return result


def _probe_worker(out: str) -> None:
    """One worker of the one-step check (TF_CONFIG set by the test); writes
    OUT/<family>_<index>.npz.
    """
    import keras  # noqa: F401  (Keras 3)

    from cpc_tf.training import make_strategy

    strategy = make_strategy("multiworker")  # before anything initialises TensorFlow
    index = int(json.loads(os.environ["TF_CONFIG"])["task"]["index"])
    # Worker 1 deliberately uses another seed: only the chief's broadcast can make it agree.
    for family, cfg in _probe_configs(seed=0 if index == 0 else 1234).items():
        np.savez(
            os.path.join(out, f"{family}_{index}.npz"),
            **_two_steps(cfg, strategy, _probe_batch(family)),
        )


def _run_probe(out: Path, tmp: Path) -> None:
    from cpc_tf.launch import free_ports, tf_config

    ports = free_ports(2)
    env = _env(tmp)
    procs = []
    try:
        for i in range(2):
            procs.append(
                subprocess.Popen(
                    [sys.executable, __file__, "probe", str(out)],
                    env=dict(env, TF_CONFIG=tf_config(ports, i)),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )
        logs = [p.communicate(timeout=RUN_TIMEOUT_S)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()  # SIGTERM is swallowed by TensorFlow once the strategy is up
                p.wait()
    for i, p in enumerate(procs):
        assert p.returncode == 0, f"probe worker {i}:\n{logs[i][-3000:]}"


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("probe")
    _run_probe(out, tmp_path_factory.mktemp("probe_tmp"))
    return out


@pytest.mark.parametrize("family", ["cpc", "simclr"])
def test_one_step_on_two_workers_equals_one_process(family, probe):
    import tensorflow as tf

    from cpc_tf.training import compile_model

    w0, w1 = (dict(np.load(probe / f"{family}_{i}.npz")) for i in range(2))
    n = sum(k.startswith("init_") for k in w0)
    cfg = _probe_configs(seed=0)[family]
    batch = _probe_batch(family)
    single = _two_steps(cfg, tf.distribute.get_strategy(), batch)

    # Initial weights: worker 1 (seed 1234) received the chief's (seed 0), which are those
    # of one process seeded 0.
    for i in range(n):
        np.testing.assert_array_equal(w0[f"init_{i}"], w1[f"init_{i}"])
        np.testing.assert_allclose(w0[f"init_{i}"], single[f"init_{i}"], rtol=0, atol=1e-7)
    # The loss on the fixed global batch, before and after one update.
    #
    # The two sides do not run the same float32 arithmetic: one process normalises with
    # the fused BatchNorm kernel, the workers with statistics and gradient sums
    # all-reduced across replicas (cpc_tf.models.fastops). Against a float64 reference
    # the fused kernel is the more accurate of the two, but the per-replica sums of the
    # early layers' BN gradients (thousands of steps per channel) differ from it by
    # ~1e-4 relative, and two SGD steps carry that into the weights. So each weight must
    # land within 5% of how far it moved; a missing all-reduce or a wrong 1/replicas
    # scaling moves weights by tens of percent.
    for step in range(2):
        for name in [k for k in single if k.startswith(f"step{step}_")]:
            assert w0[name] == w1[name]
            assert float(w0[name]) == pytest.approx(float(single[name]), rel=1e-4, abs=1e-6), name
    # After two updates: identical on the workers, equal to one process (averaged gradients).
    moved = 0.0
    for i in range(n):
        np.testing.assert_array_equal(w0[f"final_{i}"], w1[f"final_{i}"])
        movement = float(np.max(np.abs(single[f"final_{i}"] - single[f"init_{i}"])))
        np.testing.assert_allclose(
            w0[f"final_{i}"], single[f"final_{i}"], rtol=0, atol=0.05 * movement + 2e-6
        )
        moved = max(moved, movement)
    assert moved > 1e-2  # the updates are far above the tolerance: the check has teeth

    # And it could fail: each worker's half alone (local negatives, local BatchNorm
    # statistics) gives a clearly different loss.
    model = compile_model(cfg)
    halves = [
        tuple(a[h * 4 : (h + 1) * 4] for a in batch)
        if isinstance(batch, tuple)
        else batch[h * 4 : (h + 1) * 4]
        for h in range(2)
    ]
    local_only = np.mean([float(model.contrastive_loss(h, training=True)[0]) for h in halves])
    assert abs(local_only - float(single["step0_loss"])) > 0.05, (
        local_only,
        float(single["step0_loss"]),
    )


# ------------------------------------------------------------------ kill -9, then --resume
def _worker_pids(launcher: int) -> dict[int, int]:
    """{worker index: pid} of the launcher's children, from their TF_CONFIG (Linux /proc)."""
    pids = {}
    children = Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split()
    for pid in map(int, children):
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        config = next(e for e in env if e.startswith(b"TF_CONFIG="))[len(b"TF_CONFIG=") :]
        pids[json.loads(config)["task"]["index"]] = pid
    return pids


def _backup_epoch(run: Path) -> int:
    """Epochs the chief's backup records as complete (0 before the first)."""
    try:
        return int(
            json.loads((run / "checkpoints" / "backup" / "training_metadata.json").read_text())[
                "epoch"
            ]
        )
    except (OSError, ValueError, KeyError):
        return 0


def _train_and_kill(
    victim: int, audio_dir: Path, cache_dir: Path, run: Path, env: dict[str, str], err_path: Path
) -> None:
    """Start a 3-epoch run on 2 workers, SIGKILL worker `victim` early in epoch 2, check the
    stop.
    """
    # 20 steps per epoch: epoch 2 lasts seconds, so the kill lands inside it.
    # Every checkpoint kept, so the resumed run can be seen not to rewrite epoch 1's.
    flags = set_flags(TINY_CPC) + [
        "--set",
        "train.epochs=3",
        "--set",
        "train.steps_per_epoch=20",
        "--set",
        "train.keep_checkpoints=0",
    ]
    with open(err_path, "w") as err_file:
        launcher = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cpc_tf",
                "train",
                "--workers",
                "2",
                "--audio-dir",
                str(audio_dir),
                "--out",
                str(run),
                "--cache-dir",
                str(cache_dir),
                *flags,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err_file,
        )
        try:
            deadline = time.monotonic() + RUN_TIMEOUT_S
            # Epoch 1 is complete once its history row and its backup are both on disk.
            while len(_history(run)) < 1 or _backup_epoch(run) < 1:
                assert launcher.poll() is None, "training ended before it could be killed"
                assert time.monotonic() < deadline, "epoch 1 never finished"
                time.sleep(0.05)
            pids = _worker_pids(launcher.pid)
            os.kill(pids[victim], signal.SIGKILL)
            killed = time.monotonic()
            launcher.wait(timeout=60)
            stopped_after = time.monotonic() - killed
        finally:
            if launcher.poll() is None:
                launcher.kill()  # its workers die with it
                launcher.wait()
    err = err_path.read_text()
    assert launcher.returncode == 128 + signal.SIGKILL, err[-3000:]
    assert f"worker {victim} was killed by signal 9; stopped the others" in err
    assert stopped_after < 20  # SIGTERM, a short grace, then SIGKILL (TensorFlow swallows SIGTERM)
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids.values())
    assert [int(r["epoch"]) for r in _history(run)] == [0] and _backup_epoch(
        run
    ) == 1  # died in epoch 2
    # Only the logs of the failed session are kept: no worker scratch folder survives.
    tmp = Path(env["TMPDIR"])
    assert not list(tmp.rglob("cpc_tf_worker_*"))
    assert all(p.suffix == ".log" for p in tmp.rglob("*") if p.is_file())


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="finds the worker processes in /proc"
)
def test_kill_9_of_worker_1_stops_the_chief(audio_dir, cache_dir, tmp_path):
    """The chief, blocked in a collective and deaf to SIGTERM, is stopped all the same."""
    _train_and_kill(
        1, audio_dir, cache_dir, tmp_path / "run", _env(tmp_path / "tmp"), tmp_path / "launcher.err"
    )


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="finds the worker processes in /proc"
)
def test_kill_9_of_the_chief_then_resume_keeps_every_epoch_once(audio_dir, cache_dir, tmp_path):
    run, default_cache = tmp_path / "run", tmp_path / "default_cache"
    env = _env(
        tmp_path / "tmp", CPC_TF_CACHE=str(default_cache)
    )  # where a cache without --cache-dir would go
    _train_and_kill(0, audio_dir, cache_dir, run, env, tmp_path / "launcher.err")
    first = _history(run)
    checkpoint = run / "checkpoints" / "epoch_001.weights.h5"
    written = checkpoint.stat().st_mtime_ns

    # Resume through the launcher: the audio folder and the cache come from run.json.
    out = _launch("--out", str(run), "--resume", env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    rows = _history(run)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    # The completed epoch was neither lost nor redone: training went on at epoch 2.
    assert rows[0] == first[0] and checkpoint.stat().st_mtime_ns == written
    assert "Epoch 1/3" not in out.stdout and "Epoch 2/3" in out.stdout
    assert (run / "model.keras").is_file()
    assert not list(run.rglob(".cpc_tf-tmp-*"))  # no debris of the kill
    state = json.loads((run / "run.json").read_text())
    assert state["status"] == "finished" and state["epochs_completed"] == 3
    assert not default_cache.exists()  # the resumed workers reused the run's cache


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "probe":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        _probe_worker(sys.argv[2])
    else:
        sys.exit(
            "usage: python tests/test_multiworker.py probe OUT_DIR "
            "(one worker of the one-step check)"
        )
