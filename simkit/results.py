"""One protocol for the results of fits and estimators in simkit and fitting.

Every result class (``simkit.peak_estimator.PeakFit``, ``fitting.model.FitResult``/``ScanFit``, ``fitting.hypotheses``,
``fitting.refine``, ``fitting.crystal_fit``, ``fitting.peaks``) answers the same questions with the same names:

- ``ok`` — did it work: ``bool`` for a single result; a bool array with the leading shape for vectorised ones
  (one entry per pixel or per profile, e.g. ``PeakFit``, ``PeakMap``, ``ScanFit``);
- ``message`` — why (``str``; empty is never used: a successful result says so);
- ``warnings`` — ``tuple[str, ...]`` of things a user should read before trusting the numbers;
- ``values`` — name → best value (float, or an array for vectorised results);
- ``stderr`` — name → 1σ uncertainty in the same units (NaN where the estimator gives none);
- ``summary()`` — a few lines of text with units.

Old attribute names stay (``converged``, ``position_err``, ``uncertainties`` …). Where an old attribute already
had the name ``values`` or ``stderr`` as an array over parameters (``FitResult.stderr``, ``ScanFit.values``), it is
a :class:`NamedArray`: still the same ndarray, and also addressable by parameter name like a dict.

This module sits at the bottom of simkit (numpy only) so that simkit and fitting can both use it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

__all__ = ["NamedArray", "Result", "ResultMixin", "StatisticsResult", "format_summary", "no_stderr"]


class NamedArray(np.ndarray):
    """An ndarray whose last axis is also addressable by name, so that it works as ``name → value`` mapping.

    ``a["q_scale"]`` is the column of that name (a float for a 1-D array, an array of the leading shape
    otherwise); ``keys()``, ``items()``, ``get()``, ``to_dict()`` and ``name in a`` behave as for a dict.
    Integer/slice indexing and arithmetic give plain ndarrays (the names belong to the last axis only).
    Iteration is over array elements, as for any ndarray.

    Parameters
    ----------
    array : array-like, shape (..., P)
    names : sequence of str, length P
    """

    names: tuple[str, ...]

    def __new__(cls, array, names):
        obj = np.asarray(array).view(cls)
        names = tuple(str(n) for n in names)
        if obj.ndim == 0 or obj.shape[-1] != len(names):
            raise ValueError(f"NamedArray: last axis of shape {obj.shape} does not match {len(names)} names {names}")
        obj.names = names
        return obj

    def __array_finalize__(self, obj) -> None:
        self.names = getattr(obj, "names", ())

    def __reduce__(self):
        return (NamedArray, (np.asarray(self), self.names))

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        inputs = tuple(np.asarray(x) if isinstance(x, NamedArray) else x for x in inputs)
        if out is not None:
            kwargs["out"] = tuple(np.asarray(o) if isinstance(o, NamedArray) else o for o in out)
        return getattr(ufunc, method)(*inputs, **kwargs)

    def _index(self, name: str) -> int:
        if name not in self.names:
            raise KeyError(f"{name!r} is not a parameter; valid: {list(self.names)}")
        return self.names.index(name)

    def __getitem__(self, key):
        if isinstance(key, str):
            v = np.asarray(self)[..., self._index(key)]
            return float(v) if v.ndim == 0 else v
        return np.asarray(self)[key]

    def __contains__(self, key) -> bool:
        if isinstance(key, str):
            return key in self.names
        return super().__contains__(key)

    def keys(self) -> tuple[str, ...]:
        """Parameter names (the last axis)."""
        return self.names

    def items(self) -> Iterator[tuple[str, object]]:
        """(name, value) pairs."""
        return ((n, self[n]) for n in self.names)

    def get(self, key: str, default=None):
        """``self[key]`` or ``default`` when ``key`` is not a name."""
        return self[key] if key in self.names else default

    def to_dict(self) -> dict[str, object]:
        """A plain dict name → value."""
        return dict(self.items())


@runtime_checkable
class Result(Protocol):
    """What every result object exposes (see the module docstring)."""

    @property
    def ok(self): ...

    @property
    def message(self) -> str: ...

    @property
    def warnings(self) -> tuple[str, ...]: ...

    @property
    def values(self) -> Mapping[str, object]: ...

    @property
    def stderr(self) -> Mapping[str, object]: ...

    def summary(self) -> str: ...


def _line(name: str, v, e, unit: str) -> str:
    a = np.asarray(v, dtype=float)
    err = np.asarray(np.nan if e is None else e, dtype=float)
    tail = f" [{unit}]" if unit else ""
    if a.ndim == 0:
        pm = f" ± {float(err):.3g}" if err.ndim == 0 and np.isfinite(err) else ""
        return f"  {name:>18s} = {float(a):.6g}{pm}{tail}"
    fin = np.isfinite(a)
    if not fin.any():
        return f"  {name:>18s} = NaN everywhere (shape {a.shape})"
    efin = np.isfinite(err) & fin if err.shape == a.shape else np.zeros(a.shape, bool)
    pm = f" ± {np.median(err[efin]):.3g}" if efin.any() else ""
    return f"  {name:>18s} = {np.median(a[fin]):.6g}{pm}{tail}  (median of {int(fin.sum())}/{a.size})"


def format_summary(
    title: str,
    values: Mapping[str, object],
    stderr: Mapping[str, object] | None = None,
    *,
    units: Mapping[str, str] | None = None,
    ok=True,
    message: str = "",
    warnings: tuple[str, ...] = (),
    extra: tuple[str, ...] = (),
) -> str:
    """The common text layout of ``summary()``: title, status, one line per value with its 1σ and unit, extra
    lines, warnings.

    Parameters
    ----------
    title : str
    values, stderr : Mapping name → float or array
        Arrays (vectorised results) are shown by their median over finite entries; NaN errors are left out.
    units : Mapping name → unit string or None
        E.g. ``{"position": "Å⁻¹"}``; missing names get no unit.
    ok : bool or array of bool
    message : str
    warnings : tuple of str
    extra : tuple of str
        Lines inserted after the values (statistics, tests).

    Returns
    -------
    str
    """
    units = dict(units or {})
    stderr = {} if stderr is None else stderr
    okv = np.asarray(ok)
    status = f"ok={bool(okv)}" if okv.ndim == 0 else f"ok in {int(np.count_nonzero(okv))}/{okv.size}"
    lines = [title, f"{status} ({message})" if message else status]
    for name, v in values.items():
        lines.append(_line(name, v, stderr.get(name) if hasattr(stderr, "get") else None, units.get(name, "")))
    lines += list(extra)
    lines += [f"warning: {w}" for w in warnings]
    return "\n".join(lines)


def no_stderr(values: Mapping[str, object]) -> dict[str, object]:
    """``stderr`` for values the estimator gives no uncertainty for: NaN of the same shape for every name."""
    return {k: np.full(np.shape(v), np.nan) if np.ndim(v) else float("nan") for k, v in values.items()}


class ResultMixin:
    """Default ``summary()`` (and ``__str__``) for a result class from its ``values``, ``stderr``, ``ok``,
    ``message`` and ``warnings``; ``_units`` (name → unit) names the unit of each value."""

    _units: ClassVar[Mapping[str, str]] = {}

    def _summary_extra(self) -> tuple[str, ...]:
        return ()

    def summary(self) -> str:
        """A short human-readable text with units."""
        return format_summary(
            type(self).__name__,
            self.values,
            self.stderr,
            units=self._units,
            ok=self.ok,
            message=self.message,
            warnings=tuple(self.warnings),
            extra=self._summary_extra(),
        )

    def __str__(self) -> str:
        return self.summary()


class StatisticsResult(ResultMixin):
    """A :class:`ResultMixin` whose ``values`` are statistics without a 1σ (AIC, p-values, shares): ``stderr``
    is NaN for every name."""

    @property
    def stderr(self) -> dict[str, object]:
        """No 1σ (NaN for every value)."""
        return no_stderr(self.values)
