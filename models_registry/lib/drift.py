"""Population stability index (PSI) of live features against the training distribution.

PSI = sum over bins of (live% - train%) * ln(live% / train%), with bins at the training
deciles. The textbook reading per feature: below 0.1 stable, 0.1-0.25 a moderate shift,
above 0.25 a major one. Hourly crypto features are regime-dependent, though: on the real
BTC/USDT data a 500-bar window *inside* the training period already has one feature above
0.25 most of the time (volatility features reach 1-5). So a model's drift score is the
median PSI over its features, which moves when the inputs as a whole move (see
docs/MODELS.md for the calibration). Pure numpy; the reference is plain JSON so it lives on
the model version.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BINS = 10
# Empty bins would make the logarithm infinite; a floor keeps PSI finite and comparable.
FLOOR = 1e-4


def reference_build(x: np.ndarray, names: Sequence[str], bins: int = BINS) -> dict[str, dict]:
    """Per feature: interior bin edges at the training quantiles and each bin's share."""
    reference = {}
    for i, name in enumerate(names):
        column = x[:, i]
        column = column[np.isfinite(column)]
        if len(column) == 0:
            reference[name] = {"edges": [], "expected": [1.0]}
            continue
        # Repeated quantiles (a feature that is mostly 0) collapse into fewer bins.
        edges = np.unique(np.quantile(column, np.linspace(0, 1, bins + 1)[1:-1]))
        reference[name] = {
            "edges": [float(e) for e in edges],
            "expected": _shares(column, edges).tolist(),
        }
    return reference


def _shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return counts / max(len(values), 1)


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    e = np.maximum(np.asarray(expected, dtype="float64"), FLOOR)
    a = np.maximum(np.asarray(actual, dtype="float64"), FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def psi_by_feature(
    reference: dict[str, dict], x: np.ndarray, names: Sequence[str]
) -> dict[str, float]:
    """PSI of each column of `x` (live rows) against the reference."""
    out = {}
    for i, name in enumerate(names):
        if name not in reference:
            continue
        column = x[:, i]
        column = column[np.isfinite(column)]
        if len(column) == 0:
            continue
        edges = np.asarray(reference[name]["edges"], dtype="float64")
        out[name] = psi(np.asarray(reference[name]["expected"]), _shares(column, edges))
    return out


def drift_score(scores: dict[str, float]) -> float:
    """The model's drift: the median of its features' PSI."""
    return float(np.median(list(scores.values()))) if scores else 0.0


def drift_level(score: float, *, warning: float, critical: float) -> str:
    """ok / warning / critical from the model's drift score."""
    if score >= critical:
        return "critical"
    if score >= warning:
        return "warning"
    return "ok"
