"""Experiment planner: which semi-angle, electrons per pattern and scan step tell two hypotheses apart in time.

The question a microscopist asks before a cryo-SEND session — *with my detector and the beam damage of the
sample, which convergence semi-angle, dose per pattern and step let me decide between structure A and structure
B at a stated confidence, from one pixel or a region of N pixels?* — is answered by the expected log-likelihood
ratio of the two hypotheses' forward-modelled radial profiles.

Forward model of one setting (semi-angle α [mrad], electrons per pattern N [e], step s [Å])
-----------------------------------------------------------------------------------------
* Each :class:`Hypothesis` is an isotropic 2-D ring density I(Q) on the detector plane [fraction of the incident
  beam per Å⁻²] for a grid of thicknesses (kinematic Debye intensities scaled by n·t·(γλ)², or orientation-
  averaged dynamical Bloch-wave rings from :func:`simkit.bloch.powder_rings`).
* The probe's aperture disc is convolved in and the pattern integrated through :mod:`simkit.radial` by
  :func:`simkit.kinematic.make_probe_convolution` on the data's :class:`~simkit.geometry.DetectorGeometry`,
  with the detector's dead/hot pixels masked out and its point-spread function applied to the pattern
  (:mod:`simkit.detector`).
* Local accumulated fluence: :func:`simkit.dose.accumulated_fluence_map` of the whole scan gives, for every
  pattern of the decision region (a compact block of ``region_pixels`` positions in the middle of the scan), the
  probe-weighted local fluence received while it was recorded — neighbours' probe tails included (probe
  overlap). Damage (:class:`simkit.damage.DamageModel`, Type 1 → Li₂O) turns the profile of a hypothesis marked
  ``damage="amorphous"`` into :func:`simkit.damage.damaged_profile` at that fluence, so later patterns of the
  region record a more damaged structure than earlier ones. The region's expected counts per radial bin are the
  sum over its patterns.
* Counting detectors stay Poisson after dead-time thinning (expected rate × the survival fraction of
  :func:`simkit.detector.dead_time_response`); bins whose expected counts per pixel per frame come within 90 %
  of the counter's saturation are dropped. Integrating detectors are treated as *equivalent Poisson counts*:
  every bin is scaled by μ/var with var = (1 + gain_spread²) μ + (read noise / gain)² × pixels × frames — an
  approximation that keeps the mean and the variance of the signal.

Test statistic and its expectation
----------------------------------
Λ(y) = max_θ log L_A(y; θ) − max_θ log L_B(y; θ), Poisson likelihoods on the region's summed counts y. The
nuisance parameters θ are **profiled** (maximised, not marginalised): a free overall scale (amount of material,
camera efficiency; closed form ŝ = Σy / Σμ) and, for hypotheses tabulated on several thicknesses, the thickness
(grid search on the tabulated thicknesses with linear interpolation in between). Kinematic hypotheses scale
linearly with thickness, so with the free scale their thickness is no parameter at all.

* **Expected ΔlogL (Asimov)**: Λ evaluated on the noise-free expectation y = μ_true (Cowan, Cranmer, Gross &
  Vitells, Eur. Phys. J. C 71, 1554, 2011). For simple hypotheses it equals the Kullback–Leibler divergence
  Σ [μ_A log(μ_A/μ_B) − μ_A + μ_B] and is exactly the mean of Λ over Poisson data; with profiled nuisance
  parameters the mean differs by O(1) (Wilks), which the seeded simulation shows.
* **Spread**: the linearised standard deviation σ² = Σ μ_true (log μ̂_A/μ̂_B)² (envelope theorem) and the
  standard deviation over ``n_sim`` seeded Poisson draws.
* **Probability of a correct decision** (decide A when Λ > 0, equal priors): Φ(E[Λ]/σ) asymptotically, and the
  simulated frequency. The table reports the worse of "A true" and "B true".

The answer (:meth:`PlanResult.recommend`): among the settings whose decision probability (the smaller of the
asymptotic and the simulated one, :attr:`PlanRow.p_decision`) reaches ``confidence`` and whose damage fraction
(1 − the amorphous fraction of :func:`simkit.damage.amorphous_fraction` at the largest local fluence of the
region's material when its last pattern has been recorded) stays at or below ``max_damage``, the one with the
lowest local fluence; otherwise a plain "not reachable" with the best that is achievable within the damage
limit.

Approximations stated once: the region records the orientation average of crystalline hypotheses (many grains
per region; the grain-number statistics of a few grains are not Poisson and are not included); no inelastic or
support background; the damage state of a pattern is the kinetics at its probe-weighted fluence
(:mod:`simkit.damage`).
"""

from __future__ import annotations

from fitting.plan.core import PlanResult, PlanRow, Recommendation, plan_experiment
from fitting.plan.figure import plot_plan
from fitting.plan.hypothesis import (
    LIF_THICKNESSES,
    PRESETS,
    Hypothesis,
    hypothesis_from_atoms,
    hypothesis_from_iq,
    preset_hypotheses,
)

__all__ = [
    "LIF_THICKNESSES",
    "PRESETS",
    "Hypothesis",
    "PlanResult",
    "PlanRow",
    "Recommendation",
    "hypothesis_from_atoms",
    "hypothesis_from_iq",
    "plan_experiment",
    "plot_plan",
    "preset_hypotheses",
]
