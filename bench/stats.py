"""Summaries of repeated measurements and the figures reported against targets."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable


def summary(values: Iterable[float]) -> dict[str, Any]:
    values = [float(v) for v in values]
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "values": [round(v, 6) for v in values],
    }


@dataclass
class Figure:
    """One reported number: the median of its repetitions, with min/max where measured."""

    section: str
    name: str
    value: float
    unit: str
    low: float | None = None
    high: float | None = None
    n: int = 1
    target: str | None = None  # e.g. "<= 1.5", ">= 6"
    note: str = ""
    status: str = field(default="")

    def __post_init__(self) -> None:
        if self.target and not self.status:
            op, _, bound = self.target.partition(" ")
            bound_value = float(bound)
            ok = self.value <= bound_value if op == "<=" else self.value >= bound_value
            self.status = "PASS" if ok else "MISS"

    @classmethod
    def of(cls, section: str, name: str, stats: dict[str, Any], unit: str, scale: float = 1.0, **kwargs) -> Figure:
        return cls(section, name, stats["median"] * scale, unit, stats["min"] * scale, stats["max"] * scale,
                   stats["n"], **kwargs)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return ""
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "s":
        return f"{value:.2f} s" if value < 100 else f"{value:.0f} s"
    if unit == "MB":
        return f"{value:.0f} MB"
    if unit.endswith("/s"):
        return f"{value:,.0f} {unit}"
    if unit == "%":
        return f"{value:.0f}%"
    return f"{value:,.2f} {unit}".strip()


def fmt_range(fig: Figure) -> str:
    if fig.low is None or fig.high is None or fig.n < 2:
        return ""
    return f"[{fmt(fig.low, fig.unit)} .. {fmt(fig.high, fig.unit)}]"
