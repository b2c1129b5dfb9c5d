"""Run folders written before the package split still load and give the same numbers."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO_ROOT

import cpc_tf
from cpc_tf.training import load_run_model

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "old_runs"


@pytest.mark.parametrize("family", ["cpc", "simclr"])
def test_an_old_run_folder_loads_and_embeds_as_before(family: str, tmp_path: Path) -> None:
    run = shutil.copytree(FIXTURES / family, tmp_path / family)
    expected = np.load(run / "expected.npz")
    model = load_run_model(str(run))
    np.testing.assert_allclose(
        np.asarray(model(expected["x"], training=False)), expected["y"], rtol=1e-5, atol=1e-6
    )
    embedder = cpc_tf.load(run)  # the public API reads the same folder
    assert embedder.config.model.family == family
