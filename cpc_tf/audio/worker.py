"""What the cache builder's worker processes run: decode files to int16 PCM.

:func:`decode_for_cache` is the entry point that the cache builder runs in its worker
processes (and in the building process itself): int16 PCM out, long results spooled to
disk. No TensorFlow is imported here, so workers start fast and stay small.

A bad file becomes a :class:`CacheDecodeResult` with a reason; decoding never lets a
bad file raise anything else. Faults of the machine are not the file's: running out of
memory, and any ``OSError`` while writing the spool (a full disk or quota, an I/O error
on the cache side), raise :class:`~cpc_tf.errors.ResourceError` so that the build stops
instead of recording a good file as bad.
"""

from __future__ import annotations

import contextlib
import os
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cpc_tf.audio.decode import SILENCE_PEAK, AudioReader, iter_resampled, to_int16
from cpc_tf.audio.report import printable
from cpc_tf.audio.skips import REASON_CORRUPT, REASON_TOO_SHORT, AudioFileError
from cpc_tf.errors import ResourceError


@dataclass
class CacheDecodeResult:
    """What a cache worker sends back for one file.

    On success ``reason`` is empty and the int16 PCM is either in ``pcm`` (short files)
    or in the raw little-endian file ``spool`` (long files; the reader deletes it).
    """

    rel: str
    num_samples: int = 0
    orig_sample_rate: int = 0
    channels: int = 0
    silent: bool = False
    pcm: np.ndarray | None = None
    spool: str | None = None
    reason: str = ""
    detail: str = ""
    clipped: int = 0  # samples at int16 full scale (clipped in the source or by us)

    @property
    def ok(self) -> bool:
        """True when the file decoded."""
        return not self.reason


# ------------------------------------------------------------------- cache workers
def worker_init() -> None:
    """Initialiser of cache worker processes: silence C-level stderr chatter."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    warnings.simplefilter("ignore")


def worker_ready() -> int:
    """A no-op task that makes a freshly started worker import this module."""
    return os.getpid()


class _PcmSink:
    """Collects a file's int16 PCM in memory, moving it to a spool file in ``spool_dir``
    once it grows past ``spool_samples``. Counts samples at full scale on the way.
    """

    def __init__(self, spool_dir: str, spool_samples: int) -> None:
        self.spool_dir = spool_dir
        self.spool_samples = spool_samples
        self.parts: list[np.ndarray] = []
        self.total = 0
        self.clipped = 0
        self.spool: str | None = None
        self._fh: Any = None

    def write(self, pcm: np.ndarray) -> None:
        self.total += len(pcm)
        self.clipped += int(np.count_nonzero((pcm == 32767) | (pcm == -32768)))
        if self._fh is None:
            self.parts.append(pcm)
            if self.total <= self.spool_samples:
                return
            self.spool = os.path.join(self.spool_dir, f"{uuid.uuid4().hex}.pcm")
            self._fh = open(self.spool, "wb")  # noqa: SIM115 - closed in finish/discard
            pcm = np.concatenate(self.parts)
            self.parts = []
        self._fh.write(pcm.tobytes())

    def finish(self) -> np.ndarray | None:
        """Close the spool; the PCM when it stayed in memory, else None."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
            return None
        return np.concatenate(self.parts) if self.parts else np.zeros(0, "<i2")

    def discard(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
            self._fh = None
        if self.spool:
            with contextlib.suppress(OSError):
                os.remove(self.spool)


def _fault_text(exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        return "out of memory"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _decode_one_for_cache(
    path: str, rel: str, sample_rate: int, spool_dir: str, quality: str, spool_samples: int
) -> CacheDecodeResult:
    stats: dict[str, float] = {}
    sink = _PcmSink(spool_dir, spool_samples)
    try:
        with AudioReader(path) as reader:
            assert reader.probe is not None
            probe = reader.probe
            for block in iter_resampled(reader, sample_rate, quality, stats=stats):
                sink.write(to_int16(block))
        if not stats.get("frames"):
            raise AudioFileError(REASON_TOO_SHORT, "the file holds 0 samples")
        if sink.total == 0:
            raise AudioFileError(REASON_TOO_SHORT, f"0 samples at {sample_rate} Hz")
        pcm = sink.finish()
        return CacheDecodeResult(
            rel,
            num_samples=sink.total,
            orig_sample_rate=probe.sample_rate,
            channels=probe.channels,
            silent=stats["peak"] < SILENCE_PEAK,
            pcm=pcm,
            spool=sink.spool,
            clipped=sink.clipped,
        )
    except AudioFileError as exc:
        failure = CacheDecodeResult(rel, reason=exc.reason, detail=exc.detail)
    except (MemoryError, OSError) as exc:
        # Not the file's fault: no memory, or the spool (cache side) cannot be written.
        # Reading errors of the file itself arrive as AudioFileError.
        sink.discard()
        raise ResourceError(f"{_fault_text(exc)} while decoding {printable(rel)}") from None
    except Exception as exc:  # anything a decoder library throws at us
        failure = CacheDecodeResult(
            rel, reason=REASON_CORRUPT, detail=f"{type(exc).__name__}: {exc}"
        )
    sink.discard()
    return failure


def decode_for_cache(
    items: Sequence[tuple[str, str]],
    sample_rate: int,
    spool_dir: str,
    quality: str = "HQ",
    spool_samples: int = 1 << 20,
) -> list[CacheDecodeResult]:
    """Decode ``(absolute path, relative path)`` items to int16 PCM at ``sample_rate``.

    Runs in a worker process (or in the building process itself). A result longer than
    ``spool_samples`` is written to a raw file in ``spool_dir`` as it is decoded instead
    of being sent back through the pipe, so a worker holds at most ``spool_samples`` of
    output plus one source block.
    """
    return [
        _decode_one_for_cache(path, rel, sample_rate, spool_dir, quality, spool_samples)
        for path, rel in items
    ]


def read_spool(path: str, start: int, count: int) -> np.ndarray:
    """``count`` int16 samples from a spool file written by :func:`decode_for_cache`."""
    return np.fromfile(path, dtype="<i2", count=count, offset=2 * start)
