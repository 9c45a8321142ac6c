"""structures.checks: argument checks name the argument, the bad value and what is valid; angle ↔ Q conversions."""

from __future__ import annotations

import numpy as np
import pytest

from structures import checks


@pytest.mark.parametrize(
    ("call", "exc", "words"),
    [
        (lambda: checks.check_positive("step", -4.0, "Å"), ValueError, ["step=-4.0", "> 0", "[Å]"]),
        (lambda: checks.check_positive("step", 0.0, "Å"), ValueError, ["step=0.0", "> 0"]),
        (lambda: checks.check_positive("dark", -1, "e", allow_zero=True), ValueError, ["dark=-1", ">= 0"]),
        (lambda: checks.check_positive("step", "four", "Å"), TypeError, ["step='four'", "real number"]),
        (lambda: checks.check_positive("step", True, "Å"), TypeError, ["step=True", "bool"]),
        (lambda: checks.check_finite("defocus", float("nan"), "Å"), ValueError, ["defocus=nan", "finite"]),
        (lambda: checks.check_in_range("x", 1.0, 0.0, 1.0, high_open=True), ValueError, ["x=1.0", "[0, 1)"]),
        (lambda: checks.check_integer("n", 2.5, minimum=1), TypeError, ["n=2.5", "integer"]),
        (lambda: checks.check_integer("n", 0, minimum=1), ValueError, ["n=0", ">= 1"]),
        (lambda: checks.check_array("q", [0.1, -0.2], "Å⁻¹", low=0.0), ValueError, ["q contains [-0.2]", ">= 0"]),
        (lambda: checks.check_array("c", np.zeros((2, 3)), shape=(None, 2)), ValueError, ["c has shape (2, 3)"]),
        (lambda: checks.check_cell("cell", [10.0, -1.0, 10.0]), ValueError, ["cell", "positive lengths"]),
        (lambda: checks.check_rng("seed"), TypeError, ["rng", "'seed'"]),
        (lambda: checks.check_energy(300.0), ValueError, ["energy=300.0", "300e3"]),
    ],
)
def test_bad_input_names_argument_value_and_what_is_valid(call, exc, words):
    with pytest.raises(exc) as info:
        call()
    for w in words:
        assert w in str(info.value)


def test_good_input_comes_back_converted():
    assert checks.check_positive("step", np.float32(40.0), "Å") == 40.0
    assert type(checks.check_positive("step", np.int64(40), "Å")) is float
    assert checks.check_in_range("x", 0.0, 0.0, 1.0) == 0.0  # closed ends by default
    assert checks.check_integer("n", np.int32(3), minimum=1) == 3
    assert checks.check_cell("cell", np.diag([1.0, 2.0, 3.0])).tolist() == [1.0, 2.0, 3.0]
    gen = np.random.default_rng(1)
    assert checks.check_rng(gen)[0] is gen and checks.check_rng(5)[1] == 5


def test_wavelength_and_disc_radius_at_300kV():
    # λ = hc / sqrt(E (2 m0c² + E)) = 0.0196875 Å at 300 keV (International Tables C 4.3.1: 0.01969 Å)
    assert checks.wavelength(300e3) == pytest.approx(0.0196875, rel=2e-5)
    # a 2 mrad probe's disc: α/λ = 2e-3 / 0.0196875 = 0.10159 Å⁻¹ (Q = 1/d, no 2π)
    assert checks.mrad_to_q(2.0, 300e3) == pytest.approx(0.101587, rel=2e-5)
    # Li (110) at room temperature, d = 3.51/√2 = 2.482 Å → θ = λ/d = 7.93 mrad at 300 keV
    assert checks.q_to_mrad(np.sqrt(2) / 3.51, 300e3) == pytest.approx(7.932, rel=2e-4)


def test_conversions_are_inverse_and_keep_shape():
    a = np.linspace(0.0, 40.0, 7).reshape(7, 1)
    q = checks.mrad_to_q(a, 200e3)
    assert q.shape == a.shape
    np.testing.assert_allclose(checks.q_to_mrad(q, 200e3), a, rtol=1e-14)
    assert isinstance(checks.mrad_to_q(1.0, 200e3), float)


def test_simkit_units_are_the_same_objects():
    from simkit import units

    assert units.mrad_to_q is checks.mrad_to_q and units.wavelength is checks.wavelength
    assert units.HC_EV_A == checks.HC_EV_A
