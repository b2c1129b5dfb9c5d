"""`evaluate` replaces its report folder as a whole and refuses damaged or forged inputs in one
line.
"""

from __future__ import annotations

import errno
import io
import os
import signal
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cpc_tf.cli import main
from cpc_tf.errors import DataError
from cpc_tf.evaluation.embeddings import load_embeddings
from cpc_tf.evaluation.splits import kfold_splits


def _embeddings(path: Path, files: int = 12, dim: int = 4, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    labels = np.array(["a", "b"] * (files // 2))
    emb = rng.normal(size=(files, dim)).astype("float32") + (labels == "a")[:, None] * 2.0
    np.savez(
        path,
        embeddings=emb,
        paths=np.array([f"f{i}.wav" for i in range(files)]),
        labels=labels,
        crop_start=np.zeros(files, "float32"),
        clip_index=np.arange(files),
    )
    return path


def _evaluate(emb: Path, out: Path, *extra: str) -> int:
    return main(
        [
            "evaluate",
            "--embeddings",
            str(emb),
            "--out",
            str(out),
            "--references",
            "none",
            "--folds",
            "3",
            *extra,
        ]
    )


def _staging_left(out: Path) -> list[str]:
    return [n for n in os.listdir(out.parent) if n.startswith(f".{out.name}.cpc_tf-tmp-")]


def test_a_failed_rewrite_leaves_the_previous_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    emb, out = _embeddings(tmp_path / "e.npz"), tmp_path / "report"
    assert _evaluate(emb, out) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert {"report.md", "metrics.json", "confusion_matrix.png"} <= set(before)

    import cpc_tf.evaluation.report as report

    def full_disk(*_args: object, **_kw: object) -> str:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(report, "render_markdown", full_disk)
    capsys.readouterr()
    assert _evaluate(emb, out, "--seeds", "2") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"cpc_tf: error: writing the report {out} failed, the previous report is unchanged: "
        "No space left on device"
    ]
    assert {
        p.name: p.read_bytes() for p in out.iterdir()
    } == before  # no new figure beside the old report
    assert _staging_left(out) == []


def test_a_report_folder_is_replaced_as_a_whole(tmp_path: Path) -> None:
    emb, out = _embeddings(tmp_path / "e.npz"), tmp_path / "report"
    assert _evaluate(emb, out) == 0
    (out / "references").mkdir()
    (out / "references" / "mfcc.npz").write_bytes(b"kept")
    (out / "tsne_classes.png").write_bytes(b"stale figure of the old report")
    stale = tmp_path / ".report.cpc_tf-tmp-99999"  # left by a killed evaluate
    stale.mkdir()
    assert _evaluate(emb, out, "--folds", "4") == 0
    assert "4-fold" in (out / "report.md").read_text()
    assert (out / "tsne_classes.png").read_bytes() != b"stale figure of the old report"
    assert (
        out / "references" / "mfcc.npz"
    ).read_bytes() == b"kept"  # the references cache is carried over
    assert not stale.exists() and _staging_left(out) == []


def test_a_folder_that_is_not_a_report_is_refused_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emb, out = _embeddings(tmp_path / "e.npz"), tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("do not delete")
    assert _evaluate(emb, out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'thesis.tex'" in err[0] and "--force" in err[0]
    assert (out / "thesis.tex").read_text() == "do not delete" and not (out / "report.md").exists()
    assert _evaluate(emb, out, "--force") == 0
    assert (out / "report.md").exists() and not (out / "thesis.tex").exists()


def test_kill_9_during_evaluate_keeps_the_old_report(tmp_path: Path) -> None:
    small, big, out = (
        _embeddings(tmp_path / "s.npz"),
        _embeddings(tmp_path / "b.npz", 600, 64, 1),
        tmp_path / "r",
    )
    assert _evaluate(small, out) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cpc_tf",
            "evaluate",
            "--embeddings",
            str(big),
            "--out",
            str(out),
            "--references",
            "none",
            "--folds",
            "2",
            "--seeds",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    deadline = time.time() + 120
    for line in proc.stdout:  # wait until the probes run, then kill
        if "t-SNE" in line or time.time() > deadline:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert _evaluate(small, out) == 0 and _staging_left(out) == []


def test_kfold_with_fewer_files_per_class_than_folds_is_unstratified_with_a_note() -> None:
    labels = {f"f{i}.wav": "ab"[i % 2] for i in range(12)}
    plan = kfold_splits(sorted(labels), labels, k=10)
    assert len(plan.splits) == 10 and "not stratified" in plan.description
    tested = sorted(f for s in plan.splits for f in s.test_files)
    assert tested == sorted(labels)  # every file tested exactly once
    assert any("smallest class has 6 file(s), fewer than the 10 folds" in n for n in plan.warnings)


def _npy(shape: tuple[int, ...], dtype: str = "<f4", payload: bytes = b"") -> bytes:
    header = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {shape!r}, }}"
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1") + payload


def test_a_forged_array_header_is_refused_before_loading(tmp_path: Path) -> None:
    path = tmp_path / "forged.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(
            "embeddings.npy", _npy((400_000, 400_000))
        )  # claims 596 GiB, holds nothing
        for key, value in {
            "paths": np.array(["a.wav"]),
            "labels": np.array(["x"]),
            "crop_start": np.zeros(1, "f4"),
            "clip_index": np.zeros(1, int),
        }.items():
            buf = io.BytesIO()
            np.save(buf, value)
            archive.writestr(f"{key}.npy", buf.getvalue())
    start = time.perf_counter()
    with pytest.raises(
        DataError,
        match=r"'embeddings' declares shape \(400000, 400000\) of float32 "
        r"\(596\.0 GiB\)",
    ):
        load_embeddings(path)
    assert time.perf_counter() - start < 5


def test_the_headline_table_is_printed_before_the_report_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cpc_tf.evaluation.report_md import headline_table

    stat = {"accuracy": {"mean": 0.9, "std": 0.05, "n": 4}}
    result = {
        "primary_metric": "accuracy",
        "results": {
            "model": {"file": stat, "crop": {"accuracy": {"mean": 0.8, "std": 0.0, "n": 1}}},
            "mfcc": {"file": {"accuracy": {"mean": 0.5, "std": 0.1, "n": 4}}, "crop": {}},
        },
        "comparison": [
            {"baseline": "mfcc", "difference": 0.4, "beyond_spread": True, "two_sigma": 0.2}
        ],
    }
    assert headline_table(result) == [
        "representation  accuracy (file)  accuracy (crop)  model minus this row",
        "model           0.900 ± 0.050    0.800",
        "mfcc            0.500 ± 0.100    n/a              +0.400, beyond the spread (2σ 0.200)",
    ]

    emb, out = _embeddings(tmp_path / "e.npz"), tmp_path / "report"
    assert (
        main(
            [
                "evaluate",
                "--embeddings",
                str(emb),
                "--out",
                str(out),
                "--references",
                "none",
                "--folds",
                "3",
                "--baseline",
                f"copy={emb}",
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    table = lines.index(next(ln for ln in lines if ln.strip().startswith("representation")))
    assert lines[table + 1].split()[0] == "model" and lines[table + 2].split()[0] == "copy"
    assert "within the spread" in lines[table + 2]
    assert lines[-1] == f"cpc_tf: report: {out / 'report.md'} (metrics.json and figures beside it)"


def test_stale_temporaries_of_a_killed_writer_are_removed(tmp_path: Path) -> None:
    from cpc_tf.evaluation.embeddings import save_embeddings
    from cpc_tf.fileio import TEMP_PREFIX

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(dead.stdout)  # a process that has exited
    stale = tmp_path / f"{TEMP_PREFIX}{pid}-emb.npz"  # what a killed extract leaves
    alive = tmp_path / f"{TEMP_PREFIX}{os.getppid()}-emb.npz"  # a writer that is still running
    other = tmp_path / f"{TEMP_PREFIX}{pid}-other.npz"  # another output's temporary
    user = tmp_path / ".tmp-1-emb.npz"  # a user's file of a similar name
    for p in (stale, alive, other, user):
        p.write_bytes(b"x" * 1000)
    save_embeddings(tmp_path / "emb.npz", embeddings=np.zeros((1, 2), "float32"))
    assert not stale.exists() and alive.exists() and other.exists() and user.exists()
    assert np.load(tmp_path / "emb.npz")["embeddings"].shape == (1, 2)


def test_progress_bars_name_their_stage_and_stay_out_of_logs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io as _io

    from cpc_tf.audio.report import progress_bar

    class Terminal(_io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", _io.StringIO())  # a log file: no bar at all
    with progress_bar(10, "extract: random init", True, unit="crop") as bar:
        assert bar.disable
        bar.update(10)
    assert sys.stderr.getvalue() == ""
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with progress_bar(10, "extract: random init", True, unit="crop") as bar:
        assert not bar.disable
        bar.update(10)
    assert "extract: random init" in terminal.getvalue() and "crop" in terminal.getvalue()
