"""`cpc_tf train --workers N`: N local worker processes under MultiWorkerMirroredStrategy.

The launcher picks N free ports on 127.0.0.1, starts one `cpc_tf train --strategy
multiworker` process per worker with its own ``TF_CONFIG``, streams the chief's output
(worker 0), keeps every other worker's output in a log file, and stops all of them as
soon as one fails, so nothing is left waiting on a collective that will never finish.
Traffic stays on loopback. On real machines, set TF_CONFIG yourself and run
`cpc_tf train --strategy multiworker` on each host (tutorial.md, "Several machines").
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from cpc_tf.errors import ConfigError, TrainingError


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct free TCP ports on `host` (bound, read, released)."""
    socks, ports = [], []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def tf_config(ports: list[int], index: int, host: str = "127.0.0.1") -> str:
    """The TF_CONFIG of worker `index` in a cluster of workers on `host` (worker 0 is chief)."""
    cluster = {"worker": [f"{host}:{p}" for p in ports]}
    return json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})


def worker_argv(argv: list[str]) -> list[str]:
    """The user's `train` arguments, minus --workers, plus --strategy multiworker."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--workers":
            skip = True
            continue
        if a.startswith("--workers="):
            continue
        if a == "--strategy":
            skip = True
            continue
        if a.startswith("--strategy="):
            continue
        out.append(a)
    return out + ["--strategy", "multiworker"]


def _die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that has a worker killed when the launcher dies (Linux), else None.

    Workers run in their own sessions, so a launcher killed with SIGKILL (or by a test's
    timeout) would otherwise leave them training, or waiting on collectives, alone.
    prctl is looked up here, before the fork, so the child only makes one C call.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the launcher died before prctl took effect
            os._exit(1)

    return preexec


def _exit_code(code: int) -> int:
    """A worker's return code as a shell exit status (killed by signal N -> 128 + N)."""
    return 128 - code if code < 0 else code


def run_workers(
    argv: list[str], workers: int, timeout_s: float | None = None, env: dict[str, str] | None = None
) -> int:
    """Start the workers and wait; returns the first non-zero exit status, else 0.

    Each worker gets its own TF_CONFIG and a private TMPDIR inside the launcher's
    session folder, so a non-chief worker's scratch folder (and TensorFlow's temporary
    files) go away with that folder even when the worker is killed. The folder, with
    the logs of workers 1.., is removed after a successful run and kept (logs only)
    after a failure. Workers die with the launcher (Linux).
    """
    if workers < 2:
        raise ConfigError("--workers needs at least 2 (one process is plain `cpc_tf train`)")
    ports = free_ports(workers)
    session = tempfile.mkdtemp(prefix="cpc_tf_workers_")
    scratch = os.path.join(session, "tmp")
    os.makedirs(scratch)
    procs: list[subprocess.Popen] = []
    logs = []
    base_env = dict(os.environ if env is None else env)
    preexec = _die_with_parent()
    ok = False
    try:
        for i in range(workers):
            e = dict(base_env, TF_CONFIG=tf_config(ports, i), TMPDIR=scratch)
            if i == 0:
                out = None
            else:
                out = open(os.path.join(session, f"worker_{i}.log"), "w")
                logs.append(out)
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "cpc_tf", "train", *argv],
                    env=e,
                    stdout=out,
                    stderr=subprocess.STDOUT if out else None,
                    start_new_session=True,
                    preexec_fn=preexec,
                )
            )
        pids = ", ".join(str(p.pid) for p in procs)
        print(
            f"cpc_tf: started {workers} workers (pids {pids}) on 127.0.0.1 ports {ports}; "
            f"logs of workers 1.. in {session} (kept if a worker fails)",
            flush=True,
        )
        code = _wait(procs, session, timeout_s)
        ok = code == 0
        return code
    except BaseException:  # KeyboardInterrupt included: never leave workers behind
        _stop(procs)
        raise
    finally:
        for fh in logs:
            fh.close()
        shutil.rmtree(session if ok else scratch, ignore_errors=True)


def _wait(procs: list[subprocess.Popen], session: str, timeout_s: float | None) -> int:
    """Poll the workers until all succeed (0) or one fails (its exit status; the others stopped)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        codes = [p.poll() for p in procs]
        failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
        if failed:
            i, code = failed[0]
            _stop(procs)
            if i:
                _print_tail(os.path.join(session, f"worker_{i}.log"))
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            print(
                f"cpc_tf: worker {i} {how}; stopped the others. Completed epochs are kept: "
                f"continue with `cpc_tf train --workers {len(procs)} --out RUN_DIR --resume`",
                file=sys.stderr,
            )
            return _exit_code(code)
        if all(c == 0 for c in codes):
            return 0
        if deadline is not None and time.monotonic() > deadline:
            _stop(procs)
            raise TrainingError(
                f"the {len(procs)} workers did not finish within {timeout_s:.0f} s; stopped them"
            )
        time.sleep(0.2)


def _stop(procs: list[subprocess.Popen], grace_s: float = 3.0) -> None:
    """SIGTERM every live worker's process group, then SIGKILL what is left after `grace_s`.

    The grace is short on purpose: once MultiWorkerMirroredStrategy is up, TensorFlow's
    preemption notifier installs its own SIGTERM handler, which only records the signal
    (measured with TF 2.21: a worker ignored SIGTERM for 15 s). Every file the run
    writes is replaced atomically, so SIGKILL loses nothing that --resume needs.
    """
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
    t_end = time.monotonic() + grace_s
    for p in procs:
        try:
            p.wait(timeout=max(0.1, t_end - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            p.wait()


def _print_tail(path: str, lines: int = 20) -> None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            tail = fh.readlines()[-lines:]
        sys.stderr.write("".join(tail))
    except OSError:
        pass


def launch_local_workers(args: argparse.Namespace) -> int:
    """Entry of `cpc_tf train --workers N` (the CLI keeps the raw argv on `args`)."""
    argv = list(getattr(args, "raw_argv", []) or [])
    if argv and argv[0] == "train":
        argv = argv[1:]
    return run_workers(worker_argv(argv), args.workers)
