"""tutorial.md is executable documentation: every bash and python block runs here.

The blocks run in order, in one scratch folder, with ``AUDIO`` and ``LABELLED`` pointing at
small synthetic folders (the tutorial's own defaults point at ../shared/data). A bash
block whose command ends in ``# expect exit N`` must exit with N, and the ``text`` block
right after it must appear in what it printed: the troubleshooting section quotes real
messages. The install block runs in the repository root, where ``.`` is the package.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO_ROOT, synth_folder, synth_labelled_folder

pytestmark = pytest.mark.docs

TUTORIAL = REPO_ROOT / "tutorial.md"
FENCE = re.compile(r"^```(\w*)\s*$")


def parse_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block, in order."""
    blocks, lang, body = [], None, []
    for line in text.splitlines():
        m = FENCE.match(line)
        if m and lang is None:
            lang, body = m.group(1) or "text", []
        elif line.strip() == "```" and lang is not None:
            blocks.append((lang, "\n".join(body)))
            lang = None
        elif lang is not None:
            body.append(line)
    return blocks


def test_every_block_is_a_known_kind():
    kinds = {lang for lang, _ in parse_blocks(TUTORIAL.read_text())}
    assert kinds <= {"bash", "python", "text", "json", "yaml"}, kinds


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tutorial")
    (root / "configs").symlink_to(REPO_ROOT / "configs")
    synth_folder(
        root / "data" / "audio", classes=("strings", "drums"), files=4, seconds=3.0, rate=11025
    )
    synth_labelled_folder(root / "data" / "labelled")
    return root


def test_tutorial_runs(workdir):
    env = dict(
        os.environ,
        AUDIO=str(workdir / "data" / "audio"),
        LABELLED=str(workdir / "data" / "labelled"),
        CPC_TF_CACHE=str(workdir / "cache"),
        PYTHONUNBUFFERED="1",
    )
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    blocks = parse_blocks(TUTORIAL.read_text())
    ran = 0
    for i, (lang, body) in enumerate(blocks):
        if lang not in ("bash", "python"):
            continue
        expect = re.search(r"#\s*expect exit (\d+)", body)
        cwd = REPO_ROOT if "pip install" in body else workdir
        if lang == "bash":
            cmd = ["bash", "-c", ("set -eo pipefail\n" if not expect else "") + body]
        else:
            cmd = [sys.executable, "-c", body]
        out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
        shown = (
            f"block {i} ({lang}):\n{body}\n--- stdout ---\n{out.stdout[-3000:]}"
            f"\n--- stderr ---\n{out.stderr[-3000:]}"
        )
        if expect:
            assert out.returncode == int(expect.group(1)), shown
            assert "Traceback" not in out.stderr, shown
            nxt = blocks[i + 1] if i + 1 < len(blocks) else ("", "")
            assert nxt[0] == "text", (
                f"block {i} expects a failure but no text block quotes its message"
            )
            assert nxt[1].strip() in out.stderr, shown
        else:
            assert out.returncode == 0, shown
        ran += 1
    assert ran >= 15
    report = (workdir / "report" / "report.md").read_text()
    for row in (
        "| **model** |",
        "| random-init |",
        "| mfcc |",
        "model − random-init",
        "model − mfcc",
    ):
        assert row in report, row
    assert "the spread" in report
