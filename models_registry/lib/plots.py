"""Plot geometry for the model page (server-rendered SVG): pure functions, no drawing library."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

WIDTH, HEIGHT = 720, 220


def polyline(values: Sequence[float], lo: float, hi: float) -> str:
    """SVG polyline points for `values` spread over the plot's width, `hi` at the top."""
    if not values:
        return ""
    span = (hi - lo) or 1.0
    step = WIDTH / max(len(values) - 1, 1)
    return " ".join(
        f"{i * step:.1f},{HEIGHT - (v - lo) / span * HEIGHT:.1f}" for i, v in enumerate(values)
    )


def equity_plot(curve: dict[str, Any] | None, series: Sequence[str]) -> dict[str, Any] | None:
    """Lines for the named series of an equity curve, on one shared scale."""
    if not curve or not curve.get("time"):
        return None
    values = [v for name in series for v in curve.get(name, [])]
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.05 or 0.01
    lo, hi = lo - pad, hi + pad
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "lines": {name: polyline(curve.get(name, []), lo, hi) for name in series},
        "lo": lo,
        "hi": hi,
        "baseline": HEIGHT - (1.0 - lo) / (hi - lo) * HEIGHT if lo < 1.0 < hi else None,
        "start": curve["time"][0],
        "end": curve["time"][-1],
        "final": {name: (curve.get(name) or [1.0])[-1] for name in series},
    }


def importance_bars(importance: dict[str, float] | None) -> list[dict[str, Any]]:
    """Features by gain, largest first, with their share of the largest for the bar width."""
    if not importance:
        return []
    top = max(importance.values()) or 1.0
    return [
        {"name": name, "value": value, "pct": 100 * value / top}
        for name, value in sorted(importance.items(), key=lambda kv: -kv[1])
    ]


def confusion_rows(matrix: list[list[int]] | None, classes: Sequence[str]) -> list[dict[str, Any]]:
    """Rows of the confusion matrix with each cell's share of its row (for shading)."""
    if not matrix:
        return []
    rows = []
    for name, counts in zip(classes, matrix, strict=True):
        total = sum(counts) or 1
        rows.append(
            {
                "label": name,
                "cells": [{"count": c, "share": c / total} for c in counts],
                "total": sum(counts),
            }
        )
    return rows
