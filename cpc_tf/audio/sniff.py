"""Header checks: what a file that no decoder could open really is.

Only the first few kilobytes of a file are read. Text, documents of other kinds
(images, archives...), containers with an encoding libsndfile cannot decode and damaged
audio are told apart, so a skipped file gets a reason a user can act on.
"""

from __future__ import annotations

from cpc_tf.audio.skips import REASON_CORRUPT, REASON_NOT_AUDIO, REASON_UNSUPPORTED

_HEAD_BYTES = 4096

# libsndfile error numbers that mean "I know this container but not its encoding".
_SF_UNSUPPORTED_CODES = frozenset({4, 18, 78, 92, 106, 110, 117, 123, 176, 183})
# WAV format tags that libsndfile decodes (PCM, float, ADPCM, A-law, mu-law, GSM, G.72x,
# WAVE_FORMAT_EXTENSIBLE).
_WAV_TAGS_KNOWN = frozenset(
    {0x0001, 0x0002, 0x0003, 0x0006, 0x0007, 0x0011, 0x0031, 0x0040, 0x0045, 0x0064, 0x0065, 0xFFFE}
)
NON_AUDIO_MAGIC = (
    b"%PDF",
    b"\x89PNG",
    b"\xff\xd8\xff",
    b"GIF8",
    b"PK\x03\x04",
    b"\x1f\x8b",
    b"\x7fELF",
    b"BZh",
    b"\xfd7zXZ",
    b"7z\xbc\xaf",
    b"SQLite format",
)
_AUDIO_MAGIC = (
    b"RIFF",
    b"RIFX",
    b"RF64",
    b"BW64",
    b"fLaC",
    b"OggS",
    b"FORM",
    b".snd",
    b"dns.",
    b"ID3",
    b"caff",
    b"wvpk",
    b"MAC ",
    b"#!AMR",
    b"MThd",
    b"\x30\x26\xb2\x75",
)


# ------------------------------------------------------------------- classification
def read_head(path: str, n: int = _HEAD_BYTES) -> bytes:
    """The first ``n`` bytes of a file (the only place a file is opened for sniffing)."""
    with open(path, "rb") as fh:
        return fh.read(n)


def looks_like_text(head: bytes) -> bool:
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
        cid, size = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
        if cid == b"fmt ":
            data = head[pos + 8 : pos + 8 + max(size, 0)]
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


def classify_failure(head: bytes, error: BaseException | None) -> tuple[str, str]:
    """Name what is wrong with a non-empty file that no decoder could open."""
    message = str(error) if error is not None else "no decoder could open it"
    if "': " in message:  # drop soundfile's "Error opening 'path': " prefix
        message = message.split("': ", 1)[1]
    code = getattr(error, "code", None)
    if (
        code == 7
    ):  # libsndfile's "File does not exist or is not a regular file" for failed MP3 syncs
        message = "no decodable audio frames found"
    if looks_like_text(head):
        return REASON_NOT_AUDIO, "the file is text"
    if head.startswith(NON_AUDIO_MAGIC) or (
        head[:4] == b"RIFF" and head[8:12] != b"WAVE" and head[8:12] not in (b"RMP3", b"AIFF")
    ):
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
    if head.startswith(_AUDIO_MAGIC) or (
        len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0
    ):
        return REASON_CORRUPT, message
    return REASON_UNSUPPORTED, "format not recognised by libsndfile or audioread"
