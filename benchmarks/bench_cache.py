"""Decode-once cache: build throughput against a librosa loop, and memory against data size.

Both measurements use the Ogg recordings in ``../shared/data/recordings`` (14 files,
16-48 kHz, mono and stereo, ~11 minutes in all) at 22050 Hz:

1. **Throughput.** Audio seconds decoded, mixed to mono and resampled per wall second.
   *Ours* is a full ``open_cache`` build from scratch (worker start-up, header probing,
   decoding, soxr resampling, int16 TFRecord shards, index) with ``--workers`` decoding
   processes (0 = one per available core; the building process is one of them, the
   others are spawned workers); *theirs* is the loop a user would write first,
   ``librosa.load(path, sr=22050)`` file after file (librosa is warmed up on one short
   file first, so its import and first-call costs are not counted). Each side is timed
   ``--repeats`` times on the same files and the best time is kept (the machine may be
   shared). ``speedup_vs_librosa`` = ours / theirs on the 1x folder; the same ratio on
   the 10x folder is reported as ``speedup_vs_librosa_10x`` (skip with ``--quick``).
2. **Memory.** The cache of the 1x folder and of a folder with 10 copies of every file
   is built in a fresh process each. Peak = the build process's ``ru_maxrss`` plus the
   peaks (VmHWM) of its decoding workers, summed as if all peaked at once:
   ``rss_growth_10x`` = peak at 10x / peak at 1x. The workers are read from /proc
   because ``RUSAGE_CHILDREN`` counts the parent's memory copied by the fork that
   precedes each worker's exec (see :class:`TreeSampler`); the plain
   ``ru_maxrss``-of-self-and-children ratio is still printed as ``rss_growth_10x_rusage``,
   and the memory the build adds to the main process as ``main_rss_added_by_build_*``.

Prints human-readable lines, then exactly one line of JSON.

    python benchmarks/bench_cache.py [--workers 0] [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECORDINGS = REPO.parent / "shared" / "data" / "recordings"
SAMPLE_RATE = 22050


class TreeSampler:
    """Polls /proc for the memory of this process's children (the decoding workers).

    ``ru_maxrss`` of RUSAGE_CHILDREN is useless here: a 'spawn' worker is forked before it
    execs a fresh interpreter, and the kernel keeps the high-water mark of that brief copy
    of the parent (TensorFlow included) as the child's peak. Each worker's own VmHWM (its
    peak after exec) is read instead, every few milliseconds while it lives.
    """

    def __init__(self, interval: float = 0.02) -> None:
        import threading

        self.interval = interval
        self.worker_hwm_kib: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _children(pid: int) -> list[int]:
        # Workers are started by the thread that submits work: the main thread. Reading
        # only its list keeps the sampler cheap (TensorFlow gives the process many threads).
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as fh:
                return [int(x) for x in fh.read().split()]
        except OSError:
            return []

    @staticmethod
    def _hwm_kib(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
        except (OSError, ValueError):
            pass
        return 0

    @staticmethod
    def _is_worker(pid: int) -> bool:
        """True once the child has exec'd into a multiprocessing worker (not before)."""
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                return b"spawn_main" in fh.read()
        except OSError:
            return False

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            for pid in self._children(me):
                if not self._is_worker(pid):
                    continue
                hwm = self._hwm_kib(pid)
                if hwm:
                    self.worker_hwm_kib[pid] = max(hwm, self.worker_hwm_kib.get(pid, 0))
            self._stop.wait(self.interval)

    def take(self) -> list[int]:
        """The peaks (KiB) of the workers seen since the last call, then forget them."""
        self._stop.wait(3 * self.interval)
        peaks, self.worker_hwm_kib = list(self.worker_hwm_kib.values()), {}
        return peaks

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def child_build(folder: str, cache_base: str, workers: int, repeats: int) -> None:
    """Run in a fresh process: build the cache ``repeats`` times, print timings and peak RSS."""
    sys.path.insert(0, str(REPO))
    from cpc_tf.audio.cache import open_cache

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # TensorFlow & co. loaded
    cpu_before = cpu_seconds(resource.RUSAGE_SELF) + cpu_seconds(resource.RUSAGE_CHILDREN)
    walls = []
    audio_seconds = 0.0
    files = 0
    per_build: list[list[int]] = []  # worker peaks (KiB) of each build
    with TreeSampler() as sampler:
        for i in range(repeats):
            target = os.path.join(cache_base, f"run{i}")
            sampler.take()
            start = time.perf_counter()
            cache = open_cache(
                folder, SAMPLE_RATE, cache_dir=target, workers=workers, progress=False
            )
            walls.append(time.perf_counter() - start)
            per_build.append(sampler.take())
            audio_seconds, files = cache.total_seconds, len(cache.clips)
            assert cache.update.decoded == files and not cache.skipped, cache.summary()
            shutil.rmtree(target, ignore_errors=True)
    cpu = cpu_seconds(resource.RUSAGE_SELF) + cpu_seconds(resource.RUSAGE_CHILDREN) - cpu_before
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    print(
        json.dumps(
            {
                "walls": walls,
                "cpu_per_build": cpu / repeats,
                "audio_seconds": audio_seconds,
                "files": files,
                "rss_self_mib": own,
                "rss_self_before_build_mib": before,
                "rusage_children_mib": kids,
                "worker_peak_mib": max((max(b, default=0) for b in per_build), default=0) / 1024.0,
                "workers_sum_peak_mib": max(sum(b) for b in per_build) / 1024.0,
                "worker_processes": max(len(b) for b in per_build),
            }
        )
    )


def describe_memory(r: dict) -> str:
    return (
        f"main process peak {r['rss_self_mib']:.0f} MiB "
        f"({r['rss_self_before_build_mib']:.0f} before the build), "
        f"workers' peaks {r['workers_sum_peak_mib']:.0f} MiB together "
        f"(largest {r['worker_peak_mib']:.0f} MiB)"
    )


def run_child(folder: Path, cache_base: Path, workers: int, repeats: int) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        str(folder),
        str(cache_base),
        str(workers),
        str(repeats),
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    if out.returncode != 0:
        sys.exit(f"cache build failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def librosa_seconds(paths: list[Path], repeats: int) -> tuple[float, float]:
    """Best wall time of a sequential ``librosa.load(path, sr=SAMPLE_RATE)`` loop, and its
    CPU seconds per loop."""
    import librosa

    librosa.load(str(min(paths, key=lambda p: p.stat().st_size)), sr=SAMPLE_RATE)  # warm-up
    best = float("inf")
    cpu = cpu_seconds(resource.RUSAGE_SELF)
    for _ in range(repeats):
        start = time.perf_counter()
        for p in paths:
            librosa.load(str(p), sr=SAMPLE_RATE)
        best = min(best, time.perf_counter() - start)
    return best, (cpu_seconds(resource.RUSAGE_SELF) - cpu) / repeats


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=RECORDINGS, help="folder of .ogg files")
    parser.add_argument(
        "--workers", type=int, default=0, help="decoding processes (0 = one per core)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timings per side on the 1x folder")
    parser.add_argument(
        "--quick", action="store_true", help="skip the librosa loop on the 10x folder"
    )
    args = parser.parse_args()
    oggs = sorted(args.data.glob("*.ogg"))
    if not oggs:
        sys.exit(f"no .ogg files in {args.data}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    cpus = available_cpus()
    tmp = Path(tempfile.mkdtemp(prefix="bench_cache_"))
    try:
        one, ten = tmp / "x1", tmp / "x10"
        one.mkdir()
        ten.mkdir()
        for p in oggs:
            shutil.copy(p, one / p.name)
            for k in range(10):
                shutil.copy(p, ten / f"{k}_{p.name}")
        one_files = sorted(one.iterdir())
        ten_files = sorted(ten.iterdir())

        print(
            f"files: {len(one_files)} (1x), {len(ten_files)} (10x); {cpus} cores available; "
            f"load average {load}"
        )
        r1 = run_child(one, tmp / "cache1", args.workers, args.repeats)
        ours1 = min(r1["walls"])
        audio1 = r1["audio_seconds"]
        print(
            f"ours 1x: {audio1:.0f} s of audio in {ours1:.2f} s (best of {args.repeats}: "
            f"{', '.join(f'{w:.2f}' for w in r1['walls'])}); {describe_memory(r1)}"
        )
        lib1, lib1_cpu = librosa_seconds(one_files, args.repeats)
        print(
            f"librosa 1x: {lib1:.2f} s (best of {args.repeats}); CPU {lib1_cpu:.2f} s per loop; "
            f"ours used {r1['cpu_per_build']:.2f} CPU s per build (all processes)"
        )
        r10 = run_child(ten, tmp / "cache10", args.workers, 1)
        ours10 = min(r10["walls"])
        audio10 = r10["audio_seconds"]
        print(f"ours 10x: {audio10:.0f} s of audio in {ours10:.2f} s; {describe_memory(r10)}")
        lib10 = None if args.quick else librosa_seconds(ten_files, 1)[0]
        if lib10 is not None:
            print(f"librosa 10x: {lib10:.2f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    peak1 = r1["rss_self_mib"] + r1["workers_sum_peak_mib"]
    peak10 = r10["rss_self_mib"] + r10["workers_sum_peak_mib"]
    build1 = r1["rss_self_mib"] - r1["rss_self_before_build_mib"]
    build10 = r10["rss_self_mib"] - r10["rss_self_before_build_mib"]
    result = {
        "bench": "cache",
        "speedup_vs_librosa": round(lib1 / ours1, 3),
        "rss_growth_10x": round(peak10 / peak1, 3),
        "speedup_vs_librosa_10x": round(lib10 / ours10, 3) if lib10 else None,
        "ours_audio_s_per_s": round(audio1 / ours1, 1),
        "librosa_audio_s_per_s": round(audio1 / lib1, 1),
        "ours_audio_s_per_s_10x": round(audio10 / ours10, 1),
        "librosa_audio_s_per_s_10x": round(audio10 / lib10, 1) if lib10 else None,
        "ours_cpu_s_1x": round(r1["cpu_per_build"], 3),
        "librosa_cpu_s_1x": round(lib1_cpu, 3),
        "audio_seconds_1x": round(audio1, 1),
        "peak_rss_mib_1x": round(peak1, 1),
        "peak_rss_mib_10x": round(peak10, 1),
        "main_rss_added_by_build_mib_1x": round(build1, 1),
        "main_rss_added_by_build_mib_10x": round(build10, 1),
        "worker_peak_mib_1x": round(r1["worker_peak_mib"], 1),
        "worker_peak_mib_10x": round(r10["worker_peak_mib"], 1),
        "rss_growth_10x_rusage": round(
            (r10["rss_self_mib"] + r10["rusage_children_mib"])
            / (r1["rss_self_mib"] + r1["rusage_children_mib"]),
            3,
        ),
        "sample_rate": SAMPLE_RATE,
        "workers": args.workers or cpus,
        "cpus": cpus,
        "load_average_at_start": round(load, 2) if load is not None else None,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        child_build(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
