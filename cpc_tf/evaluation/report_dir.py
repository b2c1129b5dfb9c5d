"""The report folder of ``cpc_tf evaluate``, replaced as a whole.

A report is written into a staging folder beside ``--out`` and swapped in only when every file
of it is complete: a killed or failed evaluation (a full disk, say) leaves the previous report as
it was, never a mix of new figures and an old ``report.md``. The staging folder's name marks it
as the project's own (``.NAME.cpc_tf-tmp-PID``), so later runs remove stale ones and nothing else.

A folder is taken to be a previous report when it holds ``metrics.json``; its ``references/``
(the reference embeddings, reused while the audio is unchanged) is carried into the new report.
A non-empty folder that is not a report, or that holds files the report did not write, is
refused unless ``force`` is set.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator

from cpc_tf.errors import ConfigError, DataError

#: Sub-folder of a report that outlives a rewrite (see cpc_tf.references).
REFERENCES = "references"
_OWN_FILES = ("report.md", "metrics.json")
_TAG = ".cpc_tf-tmp-"


def _own_names(out_dir: str) -> set[str]:
    """The names a previous report in ``out_dir`` wrote (empty when it is not a report)."""
    try:
        with open(os.path.join(out_dir, "metrics.json"), encoding="utf-8") as fh:
            figures = json.load(fh).get("figures") or {}
    except (OSError, ValueError, AttributeError):
        return set()
    names = set(_OWN_FILES) | {REFERENCES}
    names.update(str(v) for v in (figures.values() if isinstance(figures, dict) else figures))
    return names


def check_report_folder(out_dir: str, force: bool = False) -> None:
    """Refuse to write a report over files cpc_tf did not write, unless ``force``.

    Raises:
        DataError: ``out_dir`` exists and is not a folder, or cannot be written.
        ConfigError: ``out_dir`` holds files that are not a previous report's (without ``force``).
    """
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise DataError(f"--out {out_dir}: exists and is not a folder")
    if not os.path.isdir(out_dir) or force:
        return
    present = {n for n in os.listdir(out_dir) if n != REFERENCES}
    foreign = sorted(present - _own_names(out_dir))
    if foreign:
        shown = ", ".join(repr(n) for n in foreign[:3]) + (
            f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        )
        raise ConfigError(
            f"--out {out_dir} holds files that are not a cpc_tf report ({shown}); "
            "choose another folder, or pass --force to replace it as a whole"
        )


def _remove_stale(out_dir: str) -> None:
    parent, name = os.path.split(os.path.abspath(out_dir))
    prefix = f".{name}{_TAG}"
    for entry in os.listdir(parent):
        if entry.startswith(prefix):
            shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)


@contextlib.contextmanager
def staged_report(out_dir: str, force: bool = False) -> Iterator[str]:
    """Yield a staging folder to write the report into; swap it in as ``out_dir`` on success.

    On any error the staging folder is removed and ``out_dir`` is left as it was; an
    ``OSError`` (a full disk, a lost mount) becomes one :class:`DataError` line.
    """
    check_report_folder(out_dir, force)
    out_dir = os.path.abspath(out_dir)
    parent, name = os.path.split(out_dir)
    try:
        os.makedirs(parent, exist_ok=True)
        _remove_stale(out_dir)
        staging = os.path.join(parent, f".{name}{_TAG}{os.getpid()}")
        os.makedirs(staging)
    except OSError as exc:
        raise DataError(
            f"cannot create the report folder {out_dir}: {exc.strerror or exc}"
        ) from None
    try:
        yield staging
        _swap(staging, out_dir)
    except OSError as exc:
        raise DataError(
            f"writing the report {out_dir} failed, the previous report is unchanged: "
            f"{exc.strerror or exc}"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _swap(staging: str, out_dir: str) -> None:
    """Carry ``references/`` over, then put ``staging`` in the place of ``out_dir``."""
    old_refs = os.path.join(out_dir, REFERENCES)
    if os.path.isdir(old_refs) and not os.path.exists(os.path.join(staging, REFERENCES)):
        os.replace(old_refs, os.path.join(staging, REFERENCES))
    if not os.path.exists(out_dir):
        os.replace(staging, out_dir)
        return
    retired = f"{staging}-old"
    os.replace(out_dir, retired)
    try:
        os.replace(staging, out_dir)
    except OSError:
        os.replace(retired, out_dir)
        raise
    shutil.rmtree(retired, ignore_errors=True)
