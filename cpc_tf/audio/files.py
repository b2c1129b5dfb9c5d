"""Finding audio files in a folder and decoding them to mono at one sample rate.

Three jobs live here, none of which needs TensorFlow (worker processes import this
module alone, so they start fast and stay small):

* :func:`find_audio_files` walks a folder recursively, follows symbolic links without
  getting caught in link loops, and returns every file with an audio extension
  together with its size and modification time.
* :class:`AudioReader` opens one file with soundfile (libsndfile) and, only when
  libsndfile cannot read it, with audioread. It yields the file block by block as mono
  float32 at the source rate, so a long file is never held whole at that rate.
* :func:`iter_resampled` / :func:`decode_audio` add soxr resampling (high quality,
  streamed), and :func:`decode_for_cache` is the entry point that the cache builder
  runs in its worker processes (and in the building process itself): int16 PCM out,
  long results spooled to disk.

Every per-file failure becomes :class:`AudioFileError` with a short ``reason`` (one of
the ``REASON_*`` constants) and a longer ``detail``; callers turn it into a
:class:`SkippedFile`. Decoding never lets a bad file raise anything else. Faults of the
machine are not the file's: running out of memory, and any ``OSError`` while writing
the spool (a full disk or quota, an I/O error on the cache side), raise
:class:`~cpc_tf.errors.ResourceError` so that the build stops instead of recording a
good file as bad.

Source sample rates outside :data:`MIN_SOURCE_RATE`..:data:`MAX_SOURCE_RATE` (1 kHz to
1 MHz) are refused (reason ``bad sample rate``): a header claiming 1 Hz would otherwise
turn 40 KB of samples into hours of audio at the target rate. Resampling runs in blocks
of at most :data:`MAX_OUT_BLOCK` output samples, so memory stays bounded by the block
size whatever the ratio.
"""

from __future__ import annotations

import contextlib
import math
import os
import posixpath
import stat
import uuid
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from cpc_tf.audio.report import printable
from cpc_tf.errors import DataError, ResourceError

AUDIO_EXTENSIONS: frozenset[str] = frozenset({".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".au"})
"""File name endings taken as audio (compared case-insensitively)."""

REASON_CORRUPT = "corrupt"
REASON_EMPTY = "empty"
REASON_NOT_AUDIO = "not audio"
REASON_UNSUPPORTED = "unsupported codec"
REASON_NONFINITE = "NaN/Inf samples"
REASON_UNREADABLE = "unreadable"
REASON_TOO_SHORT = "too short"
REASON_BAD_RATE = "bad sample rate"

MIN_SOURCE_RATE = 1_000
"""Lowest source sample rate accepted (Hz); lower ones are skipped as ``bad sample rate``."""
MAX_SOURCE_RATE = 1_000_000
"""Highest source sample rate accepted (Hz)."""
MAX_OUT_BLOCK = 1 << 20
"""Most samples one resampling step produces (bounds memory for extreme rate ratios)."""

SILENCE_PEAK = 1e-4
"""A file whose absolute peak stays below this (-80 dBFS) is flagged silent."""

BLOCK_FRAMES = 1 << 16
"""Frames read per block at the source rate."""

RESAMPLE_QUALITIES = ("HQ", "VHQ")

_HEAD_BYTES = 4096

# libsndfile error numbers that mean "I know this container but not its encoding".
_SF_UNSUPPORTED_CODES = frozenset({4, 18, 78, 92, 106, 110, 117, 123, 176, 183})
# WAV format tags that libsndfile decodes (PCM, float, ADPCM, A-law, mu-law, GSM, G.72x,
# WAVE_FORMAT_EXTENSIBLE).
_WAV_TAGS_KNOWN = frozenset({0x0001, 0x0002, 0x0003, 0x0006, 0x0007, 0x0011, 0x0031, 0x0040,
                             0x0045, 0x0064, 0x0065, 0xFFFE})
_NON_AUDIO_MAGIC = (b"%PDF", b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"PK\x03\x04", b"\x1f\x8b",
                    b"\x7fELF", b"BZh", b"\xfd7zXZ", b"7z\xbc\xaf", b"SQLite format")
_AUDIO_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"BW64", b"fLaC", b"OggS", b"FORM", b".snd", b"dns.",
                b"ID3", b"caff", b"wvpk", b"MAC ", b"#!AMR", b"MThd", b"\x30\x26\xb2\x75")


# ------------------------------------------------------------------- results
@dataclass(frozen=True)
class SkippedFile:
    """A file that was left out of the cache, with a short reason and a longer detail."""

    path: str
    reason: str
    detail: str = ""


class AudioFileError(Exception):
    """One file could not be used; ``reason`` is a short category, ``detail`` says more."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class FoundFile:
    """An audio file found by :func:`find_audio_files`."""

    rel: str          # path relative to the audio folder, '/'-separated
    path: str         # absolute path as walked (links are not resolved)
    size: int
    mtime_ns: int


@dataclass
class ScanResult:
    """What a folder walk found: audio files, audio entries that could not be read, and
    how many other (non-audio) files were seen."""

    files: list[FoundFile] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    other_files: int = 0


@dataclass(frozen=True)
class AudioProbe:
    """Header facts about one file, read without decoding its samples."""

    frames: int
    sample_rate: int
    channels: int
    format: str
    subtype: str
    backend: str  # "soundfile" or "audioread"

    @property
    def duration(self) -> float:
        """Length in seconds (an estimate for formats whose header only estimates it)."""
        return self.frames / self.sample_rate if self.sample_rate > 0 else 0.0


@dataclass
class DecodedAudio:
    """A whole file decoded to mono float32 at ``sample_rate``."""

    samples: np.ndarray
    sample_rate: int
    orig_sample_rate: int
    channels: int
    silent: bool


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
    clipped: int = 0          # samples at int16 full scale (clipped in the source or by us)

    @property
    def ok(self) -> bool:
        """True when the file decoded."""
        return not self.reason


# ------------------------------------------------------------------- finding files
def check_audio_folder(audio_dir: str | os.PathLike[str]) -> str:
    """The absolute path of an existing, readable, non-empty folder; DataError otherwise."""
    folder = os.path.abspath(os.path.expanduser(os.fspath(audio_dir)))
    if not os.path.exists(folder):
        raise DataError(f"audio folder not found: {folder}")
    if not os.path.isdir(folder):
        raise DataError(f"not a folder: {folder} (give the folder that holds the audio files)")
    try:
        entries = os.listdir(folder)
    except OSError as exc:
        raise DataError(f"cannot read audio folder {folder}: {exc.strerror or exc}") from None
    if not entries:
        raise DataError(f"audio folder is empty: {folder}")
    return folder


def is_audio_name(name: str) -> bool:
    """True when the file name ends in one of :data:`AUDIO_EXTENSIONS` (any case)."""
    return os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS


def find_audio_files(audio_dir: str | os.PathLike[str]) -> ScanResult:
    """Walk ``audio_dir`` recursively (following links, each real folder once).

    Files are returned sorted by relative path. Audio-named entries that cannot be
    stat'ed (a broken link, a link loop, no permission) are listed as skipped
    'unreadable'; unreadable sub-folders likewise, with a trailing '/'.
    """
    top = os.path.abspath(os.fspath(audio_dir))
    result = ScanResult()
    seen: set[tuple[int, int]] = set()
    try:
        st = os.stat(top)
        seen.add((st.st_dev, st.st_ino))
    except OSError:
        return result
    stack: list[tuple[str, str]] = [(top, "")]
    while stack:
        folder, rel_folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            if rel_folder:
                result.skipped.append(SkippedFile(rel_folder + "/", REASON_UNREADABLE,
                                                  f"cannot list folder: {exc.strerror or exc}"))
            continue
        subfolders: list[tuple[str, str]] = []
        for entry in entries:
            rel = posixpath.join(rel_folder, entry.name) if rel_folder else entry.name
            try:
                st = entry.stat(follow_symlinks=True)
            except OSError as exc:
                if is_audio_name(entry.name):
                    why = "link loop" if getattr(exc, "errno", None) == 40 else (
                        "broken link" if entry.is_symlink() else (exc.strerror or str(exc)))
                    result.skipped.append(SkippedFile(rel, REASON_UNREADABLE, why))
                continue
            if stat.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue  # a link back to a folder already walked (a loop or a duplicate)
                seen.add(key)
                subfolders.append((entry.path, rel))
            elif stat.S_ISREG(st.st_mode):
                if is_audio_name(entry.name):
                    result.files.append(FoundFile(rel, entry.path, int(st.st_size), int(st.st_mtime_ns)))
                else:
                    result.other_files += 1
        stack.extend(reversed(subfolders))
    result.files.sort(key=lambda f: f.rel)
    result.skipped.sort(key=lambda s: s.path)
    return result


# ------------------------------------------------------------------- classification
def _read_head(path: str, n: int = _HEAD_BYTES) -> bytes:
    """The first ``n`` bytes of a file (the only place a file is opened for sniffing)."""
    with open(path, "rb") as fh:
        return fh.read(n)


def _looks_like_text(head: bytes) -> bool:
    """True for content that reads as text (no NUL bytes, nearly all printable)."""
    if not head or b"\x00" in head:
        return False
    text = head.decode("utf-8", errors="replace")
    good = sum(ch.isprintable() or ch in "\r\n\t\f" for ch in text) - text.count("\ufffd")
    return good >= 0.95 * len(text)


def _wav_format_tag(head: bytes) -> int | None:
    """The format tag of a RIFF/WAVE header (resolving WAVE_FORMAT_EXTENSIBLE)."""
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64", b"BW64") or head[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(head):
        cid, size = head[pos:pos + 4], int.from_bytes(head[pos + 4:pos + 8], "little")
        if cid == b"fmt ":
            data = head[pos + 8:pos + 8 + max(size, 0)]
            if len(data) < 2:
                return None
            tag = int.from_bytes(data[:2], "little")
            if tag == 0xFFFE and len(data) >= 26:
                tag = int.from_bytes(data[24:26], "little")
            return tag
        pos += 8 + size + (size & 1)
    return None


def _ogg_codec_known(head: bytes) -> bool:
    return any(m in head[:512] for m in (b"\x01vorbis", b"OpusHead", b"\x7fFLAC"))


def _classify_failure(head: bytes, error: BaseException | None) -> tuple[str, str]:
    """Name what is wrong with a non-empty file that no decoder could open."""
    message = str(error) if error is not None else "no decoder could open it"
    if "': " in message:  # drop soundfile's "Error opening 'path': " prefix
        message = message.split("': ", 1)[1]
    code = getattr(error, "code", None)
    if code == 7:  # libsndfile's "File does not exist or is not a regular file" for failed MP3 syncs
        message = "no decodable audio frames found"
    if _looks_like_text(head):
        return REASON_NOT_AUDIO, "the file is text"
    if head.startswith(_NON_AUDIO_MAGIC) or (head[:4] == b"RIFF" and head[8:12] != b"WAVE"
                                             and head[8:12] not in (b"RMP3", b"AIFF")):
        return REASON_NOT_AUDIO, "the file is another kind of document (image, archive, video...)"
    if code in _SF_UNSUPPORTED_CODES:
        return REASON_UNSUPPORTED, message
    tag = _wav_format_tag(head)
    if tag is not None and tag not in _WAV_TAGS_KNOWN:
        return REASON_UNSUPPORTED, f"WAV format tag 0x{tag:04X} is not decodable"
    if head[:4] == b"OggS" and not _ogg_codec_known(head):
        return REASON_UNSUPPORTED, "Ogg stream with a codec other than Vorbis, Opus or FLAC"
    if len(head) >= 8 and head[4:8] == b"ftyp":
        return REASON_UNSUPPORTED, "MP4/M4A container (AAC/ALAC) needs an ffmpeg backend"
    if head.startswith((b"wvpk", b"MAC ", b"#!AMR", b"MThd", b"\x30\x26\xb2\x75")):
        return REASON_UNSUPPORTED, "no decoder for this format is installed"
    if head.startswith(_AUDIO_MAGIC) or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return REASON_CORRUPT, message
    return REASON_UNSUPPORTED, "format not recognised by libsndfile or audioread"


@contextlib.contextmanager
def _quiet_stderr(enabled: bool) -> Iterator[None]:
    """Silence C-level writes to fd 2 (mpg123 prints notes about damaged MP3 frames)."""
    if not enabled:
        yield
        return
    try:
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        yield
        return
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


# ------------------------------------------------------------------- reading
class AudioReader:
    """One open audio file: header facts plus mono float32 blocks at the source rate.

    Use as a context manager. libsndfile is tried first; audioread is the fallback for
    files libsndfile cannot open. Opening raises :class:`AudioFileError` with a
    classified reason; so does :meth:`blocks` on a read error or non-finite samples.
    """

    def __init__(self, path: str | os.PathLike[str], quiet: bool = True) -> None:
        self.path = os.fspath(path)
        self._quiet = quiet and self.path.lower().endswith(".mp3")
        self._sf: sf.SoundFile | None = None
        self._ar: Any = None
        self._stack = contextlib.ExitStack()
        self.probe: AudioProbe | None = None

    # -- opening
    def __enter__(self) -> AudioReader:
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the decoder (idempotent)."""
        if self._sf is not None:
            with contextlib.suppress(Exception):
                self._sf.close()
            self._sf = None
        if self._ar is not None:
            with contextlib.suppress(Exception):
                self._ar.close()
            self._ar = None
        self._stack.close()

    def _open(self) -> None:
        try:
            head = _read_head(self.path)
        except PermissionError:
            raise AudioFileError(REASON_UNREADABLE, "permission denied") from None
        except IsADirectoryError:
            raise AudioFileError(REASON_UNREADABLE, "is a folder") from None
        except OSError as exc:
            raise AudioFileError(REASON_UNREADABLE, exc.strerror or str(exc)) from None
        if not head:
            raise AudioFileError(REASON_EMPTY, "zero-length file")
        if _looks_like_text(head) or head.startswith(_NON_AUDIO_MAGIC):
            raise AudioFileError(*_classify_failure(head, None))
        self._stack.enter_context(_quiet_stderr(self._quiet))
        sf_error: BaseException | None = None
        try:
            f = sf.SoundFile(self.path)
        except MemoryError:
            raise
        except Exception as exc:  # LibsndfileError, RuntimeError, TypeError on odd headers
            sf_error = exc
        else:
            self._sf = f
            if f.samplerate <= 0 or f.channels <= 0:
                raise AudioFileError(REASON_CORRUPT, "header gives no sample rate or channels")
            self.probe = AudioProbe(max(int(f.frames), 0), int(f.samplerate), int(f.channels),
                                    str(f.format), str(f.subtype), "soundfile")
            _check_rate(self.probe.sample_rate)
            return
        try:
            self._open_audioread()
        except (AudioFileError, MemoryError):
            raise
        except Exception:
            raise AudioFileError(*_classify_failure(head, sf_error)) from None

    def _open_audioread(self) -> None:
        import audioread  # lazy: only for files libsndfile cannot read

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ar = audioread.audio_open(self.path)
        self._ar = ar
        rate, channels = int(ar.samplerate), int(ar.channels)
        if rate <= 0 or channels <= 0:
            raise AudioFileError(REASON_CORRUPT, "header gives no sample rate or channels")
        _check_rate(rate)
        frames = int(round(float(ar.duration or 0.0) * rate))
        self.probe = AudioProbe(frames, rate, channels, "audioread", "PCM_16", "audioread")

    # -- reading
    def blocks(self, block_frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
        """Mono float32 blocks at the source rate; non-finite samples raise."""
        assert self.probe is not None, "open the reader first"
        source = self._sf_blocks(block_frames) if self._sf is not None else self._ar_blocks()
        done = 0
        while True:
            try:
                block = next(source)
            except StopIteration:
                return
            except AudioFileError:
                raise
            except MemoryError:
                raise
            except Exception as exc:
                where = f" after {done / self.probe.sample_rate:.1f} s" if done else ""
                raise AudioFileError(REASON_CORRUPT, f"decoding failed{where}: {exc}") from None
            if block.ndim == 2:
                block = _mix_down(block)
            block = np.ascontiguousarray(block, dtype=np.float32)
            finite = np.isfinite(block)
            if not finite.all():
                first = done + int(np.argmin(finite))
                raise AudioFileError(REASON_NONFINITE, f"{int(np.count_nonzero(~finite))} non-finite "
                                     f"sample(s), the first at {first / self.probe.sample_rate:.3f} s")
            done += len(block)
            if len(block):
                yield block

    def _sf_blocks(self, block_frames: int) -> Iterator[np.ndarray]:
        assert self._sf is not None
        while True:
            block = self._sf.read(block_frames, dtype="float32", always_2d=False)
            if len(block) == 0:
                return
            yield block

    def _ar_blocks(self) -> Iterator[np.ndarray]:
        channels = self.probe.channels if self.probe else 1
        rest = b""
        for buf in self._ar:
            data = rest + bytes(buf)
            usable = len(data) - len(data) % (2 * channels)
            rest = data[usable:]
            pcm = np.frombuffer(data[:usable], dtype="<i2").astype(np.float32) / 32768.0
            yield pcm.reshape(-1, channels)


def _check_rate(rate: int) -> None:
    """Refuse a source rate outside [MIN_SOURCE_RATE, MAX_SOURCE_RATE] (a damaged or
    hostile header: 1 Hz would blow 20,000 samples up into hours of audio)."""
    if not MIN_SOURCE_RATE <= rate <= MAX_SOURCE_RATE:
        raise AudioFileError(REASON_BAD_RATE, f"the header says {rate} Hz; accepted are "
                             f"{MIN_SOURCE_RATE:,} to {MAX_SOURCE_RATE:,} Hz")


def _mix_down(block: np.ndarray) -> np.ndarray:
    """Average the channels of a (frames, channels) block.

    Adding column views is ~20x faster than ``mean(axis=1)`` on a short inner axis and,
    unlike a matrix product, starts no BLAS threads in the worker processes.
    """
    channels = block.shape[1]
    mono = np.array(block[:, 0], dtype=np.float32)
    for c in range(1, channels):
        mono += block[:, c]
    if channels > 1:
        mono *= np.float32(1.0 / channels)
    return mono


def probe_audio(path: str | os.PathLike[str]) -> AudioProbe:
    """Open a file, read its header and close it; raises :class:`AudioFileError`."""
    with AudioReader(path) as reader:
        assert reader.probe is not None
        probe = reader.probe
    if probe.frames == 0 and probe.backend == "soundfile":
        raise AudioFileError(REASON_TOO_SHORT, "the file holds 0 samples")
    return probe


# ------------------------------------------------------------------- resampling
def resampled_length(frames: int, orig_rate: int, target_rate: int) -> int:
    """Samples after resampling ``frames`` (rounded up, as librosa does)."""
    return -(-int(frames) * int(target_rate) // int(orig_rate))


def iter_resampled(reader: AudioReader, sample_rate: int, quality: str = "HQ",
                   block_frames: int = BLOCK_FRAMES, stats: dict[str, float] | None = None
                   ) -> Iterator[np.ndarray]:
    """Mono float32 blocks of an open reader, resampled with soxr to ``sample_rate``.

    The stream is exactly :func:`resampled_length` samples long. When ``stats`` is given
    it receives ``frames`` (source frames read) and ``peak`` (absolute peak at the
    source rate) once the stream is exhausted.
    """
    if quality not in RESAMPLE_QUALITIES:
        raise ValueError(f"quality must be one of {RESAMPLE_QUALITIES}, got {quality!r}")
    assert reader.probe is not None
    in_rate = reader.probe.sample_rate
    stream = None if in_rate == sample_rate else soxr.ResampleStream(
        in_rate, sample_rate, 1, dtype="float32", quality=quality)
    # source frames per block such that one block resamples to at most MAX_OUT_BLOCK samples
    block_frames = max(1, min(block_frames, MAX_OUT_BLOCK * in_rate // max(sample_rate, 1)))
    n_in = n_out = 0
    peak = 0.0
    held: np.ndarray | None = None  # one block held back so the length can be fixed at the end
    for block in _split(reader.blocks(block_frames), block_frames):
        n_in += len(block)
        peak = max(peak, float(np.max(np.abs(block))))
        out = block if stream is None else stream.resample_chunk(block)
        if not len(out):
            continue
        if held is not None:
            n_out += len(held)
            yield held
        held = out
    tail = [held] if held is not None else []
    if stream is not None:
        tail.append(stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
    last = np.concatenate(tail) if tail else np.zeros(0, dtype=np.float32)
    want = resampled_length(n_in, in_rate, sample_rate) - n_out
    if len(last) > want:
        last = last[:max(want, 0)]
    elif len(last) < want:
        last = np.concatenate([last, np.zeros(want - len(last), dtype=np.float32)])
    if stats is not None:
        stats["frames"] = n_in
        stats["peak"] = peak
    if len(last):
        yield last


def _split(blocks: Iterator[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Cut blocks longer than ``size`` (audioread's own buffer size is not ours to set)."""
    for block in blocks:
        for start in range(0, len(block), size):
            yield block[start:start + size]


def to_int16(x: np.ndarray) -> np.ndarray:
    """Quantise float samples in [-1, 1] to little-endian int16 (clipping outside)."""
    return np.clip(np.rint(x * 32768.0), -32768, 32767).astype("<i2")


def decode_audio(path: str | os.PathLike[str], sample_rate: int, quality: str = "HQ") -> DecodedAudio:
    """Decode a whole file to mono float32 at ``sample_rate``; raises :class:`AudioFileError`.

    The file is read in blocks, so only the resampled result is held whole.
    """
    stats: dict[str, float] = {}
    with AudioReader(path) as reader:
        assert reader.probe is not None
        parts = list(iter_resampled(reader, sample_rate, quality, stats=stats))
        probe = reader.probe
    if not stats.get("frames"):
        raise AudioFileError(REASON_TOO_SHORT, "the file holds 0 samples")
    samples = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    if not len(samples):
        raise AudioFileError(REASON_TOO_SHORT, f"0 samples at {sample_rate} Hz")
    return DecodedAudio(samples, sample_rate, probe.sample_rate, probe.channels,
                        stats["peak"] < SILENCE_PEAK)


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
    once it grows past ``spool_samples``. Counts samples at full scale on the way."""

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


def _decode_one_for_cache(path: str, rel: str, sample_rate: int, spool_dir: str, quality: str,
                          spool_samples: int) -> CacheDecodeResult:
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
        return CacheDecodeResult(rel, num_samples=sink.total, orig_sample_rate=probe.sample_rate,
                                 channels=probe.channels, silent=stats["peak"] < SILENCE_PEAK,
                                 pcm=pcm, spool=sink.spool, clipped=sink.clipped)
    except AudioFileError as exc:
        failure = CacheDecodeResult(rel, reason=exc.reason, detail=exc.detail)
    except (MemoryError, OSError) as exc:
        # Not the file's fault: no memory, or the spool (cache side) cannot be written.
        # Reading errors of the file itself arrive as AudioFileError.
        sink.discard()
        raise ResourceError(f"{_fault_text(exc)} while decoding {printable(rel)}") from None
    except Exception as exc:  # anything a decoder library throws at us
        failure = CacheDecodeResult(rel, reason=REASON_CORRUPT, detail=f"{type(exc).__name__}: {exc}")
    sink.discard()
    return failure


def decode_for_cache(items: Sequence[tuple[str, str]], sample_rate: int, spool_dir: str,
                     quality: str = "HQ", spool_samples: int = 1 << 20) -> list[CacheDecodeResult]:
    """Decode ``(absolute path, relative path)`` items to int16 PCM at ``sample_rate``.

    Runs in a worker process (or in the building process itself). A result longer than
    ``spool_samples`` is written to a raw file in ``spool_dir`` as it is decoded instead
    of being sent back through the pipe, so a worker holds at most ``spool_samples`` of
    output plus one source block.
    """
    return [_decode_one_for_cache(path, rel, sample_rate, spool_dir, quality, spool_samples)
            for path, rel in items]


def read_spool(path: str, start: int, count: int) -> np.ndarray:
    """``count`` int16 samples from a spool file written by :func:`decode_for_cache`."""
    return np.fromfile(path, dtype="<i2", count=count, offset=2 * start)


def estimate_seconds(probe: AudioProbe) -> float:
    """A planning estimate of a file's duration (at least a tiny positive value)."""
    return max(probe.duration, 1e-3) if math.isfinite(probe.duration) else 1e-3
