"""The README's walkthrough runs verbatim, so the manual cannot drift from the code.

Every ```bash block of README.md is run line by line in one temporary folder: a line ``sei-send …`` is split
like a shell would (``shlex``, comments dropped) and given to ``fitting.cli.main`` in this process (one numba
compilation instead of one per command; the same code path as the console script). ``make …`` lines are the
set-up this test runs inside and are skipped. Then every ```python block runs in that folder (the dask
cluster block needs a scheduler and the py4DSTEM block a py4DSTEM install: both are skipped). Each command must
exit 0 and write what the README says it writes; the files' contents are physics-checked where a number is known
(class profiles in Å⁻¹, a fitted density inside its bounds with an uncertainty).
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def _commands() -> list[list[str]]:
    cmds = []
    for block in _blocks("bash"):
        for line in block.splitlines():
            argv = shlex.split(line, comments=True)
            if not argv or argv[0] == "make":
                continue
            cmds.append(argv)
    return cmds


def test_readme_has_a_walkthrough():
    cmds = _commands()
    assert cmds, "README.md has no ```bash block with sei-send commands"
    assert {a[1] for a in cmds} >= {"build", "simulate", "synth", "analyze", "fit", "refine"}
    assert all(a[0] == "sei-send" for a in cmds), [a[0] for a in cmds if a[0] != "sei-send"]


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory):
    import os

    import matplotlib

    matplotlib.use("Agg")
    from fitting.cli import main

    work = tmp_path_factory.mktemp("readme")
    old = Path.cwd()
    env = os.environ.get("SEI_SEND_CACHE")
    os.environ["SEI_SEND_CACHE"] = str(ROOT / ".sei-send-cache")  # the tests' shared library cache
    os.chdir(work)
    try:
        codes = [(argv, main(argv[1:])) for argv in _commands()]
    finally:
        os.chdir(old)
        if env is None:
            os.environ.pop("SEI_SEND_CACHE", None)
        else:
            os.environ["SEI_SEND_CACHE"] = env
    return work, codes


def test_every_readme_command_succeeds(walkthrough):
    work, codes = walkthrough
    assert [(" ".join(a), rc) for a, rc in codes if rc != 0] == []


def test_readme_outputs_exist_and_make_sense(walkthrough):
    import numpy as np

    work, _ = walkthrough
    for name in ("t1.csv", "lif.csv", "scan.h5", "analysis/profiles.csv", "analysis/figure2.png",
                 "analysis/figure2.pdf", "fit.png", "fit_curves.csv", "refine.png", "refine.json"):  # fmt: skip
        assert (work / name).stat().st_size > 0, name
    # Figure 2 at print resolution: 7.2 inch wide at 300 dpi ≥ 2000 px
    from matplotlib.image import imread

    assert imread(work / "analysis/figure2.png").shape[1] >= 2000
    ref = json.loads((work / "refine.json").read_text())
    lo, hi = ref["bounds_g_cm3"]
    assert lo <= ref["density_g_cm3"] <= hi
    # the walkthrough's range brackets the optimum: converged inside it, with a profile-likelihood 1σ
    assert ref["converged"] and not ref["at_bound"], ref["message"]
    assert 0 < ref["density_1sigma_g_cm3"] < 0.25 * (hi - lo)
    # the fitted curves: the model's counts are the sum of its components and background (bins used only)
    rows = [r.split(",") for r in (work / "fit_curves.csv").read_text().splitlines()]
    head = rows[0]
    comps = [i for i, h in enumerate(head) if h.endswith("_counts") and h not in ("model_counts",)]
    for r in rows[1:]:
        parts = [float(r[i]) for i in comps if r[i] != ""]
        assert np.isclose(sum(parts), float(r[head.index("model_counts")]), rtol=1e-4)


def test_readme_python_blocks_run(walkthrough):
    work, _ = walkthrough
    import os

    old = Path.cwd()
    os.chdir(work)
    ran = []
    try:
        for block in _blocks("python"):
            if "Client(" in block:  # needs a dask scheduler
                continue
            if "import py4DSTEM" in block:  # py4DSTEM pins numpy<2: shown for users, not installable here
                continue
            exec(compile(block, "README.md", "exec"), {"__name__": "readme"})  # raises on any failing line
            ran.append(block)
    finally:
        os.chdir(old)
    assert len(ran) >= 2, "the README lost its runnable Python blocks"
