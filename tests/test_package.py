"""The three import packages come from this project, not from unrelated PyPI packages of the same names."""

from __future__ import annotations

import importlib
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["simkit", "structures", "fitting"])
def test_package_is_ours(name):
    mod = importlib.import_module(name)
    # the module file must live inside this repository, not in site-packages of some other distribution
    assert Path(mod.__file__).resolve().is_relative_to(ROOT), mod.__file__
    assert mod.__version__ == version("sei-send")


def test_console_script_version():
    out = subprocess.run([sys.executable, "-m", "fitting.cli", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"sei-send {version('sei-send')}"


def test_units_wavelength_300kV():
    from simkit.units import mrad_to_q, wavelength

    # textbook value: λ(300 keV) = 0.019687 Å
    assert abs(wavelength(300e3) - 0.019687) < 2e-6
    # 2 mrad at 300 keV is the disc radius α/λ ≈ 0.1016 Å⁻¹ quoted in the conventions
    assert abs(mrad_to_q(2.0, 300e3) - 0.10159) < 1e-4
    with pytest.raises(ValueError, match="energy"):
        wavelength(5e6)
