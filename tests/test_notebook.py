"""notebooks/quickstart.ipynb runs top to bottom and is stored without outputs."""

from __future__ import annotations

import nbformat
import pytest
from helpers import REPO_ROOT
from nbclient import NotebookClient

NOTEBOOK = REPO_ROOT / "notebooks" / "quickstart.ipynb"


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None


@pytest.mark.docs
def test_quickstart_notebook_executes(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    images = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
    ]
    assert len(images) == 2  # the confusion matrix and the t-SNE map, shown inline
    last_result = [o for o in nb.cells[6].outputs if o.get("output_type") == "execute_result"]
    assert "model" in last_result[0]["data"]["text/plain"]
