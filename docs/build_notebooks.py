"""Execute the jupytext notebooks (``notebooks/*.py``) and write them with their outputs to ``docs/notebooks/``.

Run by ``make docs``; the executed ``.ipynb`` files are committed so that the published notebooks show their
figures and numbers (GitHub renders them).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    import jupytext
    import nbclient
    import nbformat

    out = ROOT / "docs" / "notebooks"
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("SEI_SEND_CACHE", str(ROOT / ".sei-send-cache"))
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
        nb = jupytext.read(path)
        nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}}).execute()  # fmt: skip
        target = out / f"{path.stem}.ipynb"
        tmp = target.with_suffix(".ipynb.tmp")
        nbformat.write(nb, tmp)
        tmp.replace(target)
        print(f"wrote {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
