"""`sei-send demo` / `make demo`: the main job on the built-in default scene."""

from __future__ import annotations


def run_demo(reduced: bool = False) -> int:
    """Run the demonstration; returns the exit code.

    Placeholder until the radial core lands (next commits): prints the set-up it checked.
    """
    from simkit.units import mrad_to_q

    print("sei-send demo: installation works.")
    print(f"  2 mrad probe disc radius at 300 keV: {mrad_to_q(2.0, 300e3):.4f} Å⁻¹ (Q = 1/d)")
    return 0
