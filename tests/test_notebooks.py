"""The notebooks (jupytext percent-format ``notebooks/*.py``) convert to .ipynb and execute without error.

Each notebook asserts its own physics checks (e.g. the LiF-containing candidate wins on LiF-containing data; a
resumed refinement recomputes nothing), so executing it is the test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))


def test_all_four_notebooks_exist():
    names = {p.stem for p in NOTEBOOKS}
    assert {
        "01_peak_assignment_hypotheses",
        "02_synthetic_dataset",
        "03_structure_refinement",
        "04_dose_damage",
    } <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path, monkeypatch):
    import jupytext  # the test extra installs both: a missing one must fail, not skip the notebooks
    import nbclient

    monkeypatch.setenv("SEI_SEND_CACHE", str(ROOT / ".sei-send-cache"))
    monkeypatch.setenv("MPLBACKEND", "Agg")  # the notebooks' `%matplotlib inline` still renders PNGs
    nb = jupytext.read(path)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code")  # stored without outputs
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    # figures are shown inline as images (a bare Figure under Agg would print its repr text only)
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{path.name} displays no figure"
    assert not any("<Figure size" in o.get("data", {}).get("text/plain", "") and "image/png" not in o.get("data", {})
                   for o in outputs)  # fmt: skip
