"""Likelihood fits of simulated components to measured radial profiles.

Forward model (expected counts in radial bin i at Q_i [Å⁻¹])::

    μ_i = E_i · [ Σₖ sₖ · (Iₖ ⊗ G_σb)(α · Q_i)  +  B(Q_i) ]

- ``E_i`` is the exposure of the bin: the number of detector pixels that went into it (``RadialProfiles.count``),
  so that ``μ`` is compared with the binned *sum* of counts (``RadialProfiles.sum``), never with a
  background-subtracted mean.
- ``Iₖ`` are simulated components (per-pixel intensity on their own Q grid, e.g. ``RadialProfiles.mean`` of a
  simulated pattern integrated by :mod:`simkit.radial` on the data's detector geometry). They already carry the
  probe (multislice with that probe, or the kinematic path through ``simkit.kinematic.probe_convolve``); the model
  never convolves with a Gaussian *probe*, only with a small *residual* Gaussian blur ``σ_b ≥ 0`` [Å⁻¹]
  (detector point spread, residual centre jitter). The blur is applied on the components' Q axis before the Q
  scale, i.e. it equals a blur of ``σ_b/α`` on the measured axis.
- ``sₖ ≥ 0`` are scales, ``α`` a common Q scale (camera-length calibration; ``α > 1`` means the measured rings
  sit at smaller Q than the simulated ones).
- ``B(Q)`` is a smooth background: power law ``A·(Q/Q₀)^(−p)``, quadratic polynomial in ``(Q − Q₀)/Q_w`` or
  exponential ``A·exp(−k (Q − Q₀))``. It stands for everything the elastic components do not contain:
  inelastic (plasmon/core-loss) scattering that reaches the detector, thermal diffuse scattering, the
  tail of the direct beam and amorphous carbon/ice support. ``Q₀`` is the geometric mean (power law) or the
  centre (poly, exp) of the fitted Q range and is reported in the description.

Components are interpolated at ``α·Q`` with a cubic spline (smooth in α, so that the Hessian exists). Bins whose
``α·Q`` could leave a component's finite Q range for any α within its bounds are excluded and reported.

Likelihoods: Poisson on counts (default), or Gaussian with given errors ``sigma`` [counts] (``sigma=None`` uses
``sqrt(max(counts, 1))``, i.e. Neyman's χ² — biased at low counts, kept as a comparison).

Optimisation (one bounded optimiser for every fit, :mod:`fitting.model.optimiser`): start values by bounded
linear least squares on the scales and the background (scipy ``lsq_linear``/``nnls``) over a small grid of α and
background shape, then damped Newton / Levenberg–Marquardt steps on the box-bounded parameters — with the observed
information (the Hessian of −log L, including the second-derivative term) where it is positive definite,
otherwise the expected (Fisher) information. A fit is flagged ``converged`` only if the Newton decrement (the
remaining achievable change of log L) is below ``tol``; uncertainties are the square roots of the diagonal of the
inverse information over the parameters not at a bound, and a parameter at a bound is flagged.

:func:`fit_scan` runs the same optimiser over all pixels of a scan at once (Poisson, expected information from a
numba kernel). Package layout: :mod:`~fitting.model.components`, :mod:`~fitting.model.forward`,
:mod:`~fitting.model.optimiser`, :mod:`~fitting.model.results`, :mod:`~fitting.model.fits`.
"""

from __future__ import annotations

from fitting.model.components import (
    BACKGROUNDS,
    Component,
    as_components,
    component_from_iq,
    component_from_pattern,
)
from fitting.model.fits import fit_profile, fit_radial, fit_scan
from fitting.model.forward import poisson_loglike, poisson_terms_kernel, spline_eval_kernel
from fitting.model.results import FitNotConvergedError, FitResult, ScanFit

__all__ = [
    "BACKGROUNDS",
    "Component",
    "FitNotConvergedError",
    "FitResult",
    "ScanFit",
    "as_components",
    "component_from_iq",
    "component_from_pattern",
    "fit_profile",
    "fit_radial",
    "fit_scan",
    "poisson_loglike",
    "poisson_terms_kernel",
    "spline_eval_kernel",
]
