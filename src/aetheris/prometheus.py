"""The Prometheus text exposition format (version 0.0.4): counters, gauges, histograms.

Hand-written rather than ``prometheus_client``: the format is a few stable lines of text, and
this keeps the package free of a dependency whose default registry is process-global (two
Apps, or two workers, in one process keep separate metrics here). Families are thread-safe:
the worker's event loop updates them while an exporter thread renders them.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence

__all__ = ["CONTENT_TYPE", "Counter", "Family", "Gauge", "Histogram", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
Labels = tuple[str, ...]


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape(value: str) -> str:
    """A label value: a help text's escapes, and double quotes."""
    return _escape_help(value).replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    pairs = ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True))
    return "{" + pairs + "}"


class Family:
    """A metric family: its ``name``, ``help`` text, type and label names."""

    kind = "untyped"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help
        self.labelnames = tuple(labels)
        self._lock = threading.Lock()

    def _check(self, labels: Labels) -> None:
        if len(labels) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {labels!r}")

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> list[str]:
        raise NotImplementedError


class _Values(Family):
    """A counter or a gauge: one value per label set."""

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help, labels)
        self._values: dict[Labels, float] = {}

    def get(self, *labels: str) -> float:
        return self._values.get(labels, 0.0)

    def samples(self) -> list[str]:
        with self._lock:
            found = sorted(self._values.items())
        return [f"{self.name}{_labels(self.labelnames, k)} {_number(v)}" for k, v in found]


class Counter(_Values):
    """A total that only goes up (its name ends in ``_total``)."""

    kind = "counter"

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError(f"{self.name}: a counter cannot go down ({amount})")
        self._check(labels)
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount


class Gauge(_Values):
    """A value that goes up and down, or is set."""

    kind = "gauge"

    def set(self, value: float, *labels: str) -> None:
        self._check(labels)
        with self._lock:
            self._values[labels] = value

    def add(self, amount: float, *labels: str) -> None:
        self._check(labels)
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount


class Histogram(Family):
    """Observations counted in cumulative buckets (upper bounds ``buckets``), with their sum."""

    kind = "histogram"

    def __init__(
        self, name: str, help: str, labels: Sequence[str], buckets: Sequence[float]
    ) -> None:
        super().__init__(name, help, labels)
        if list(buckets) != sorted(set(buckets)) or not buckets:
            raise ValueError(f"{name}: buckets must be increasing and not empty")
        self.buckets = tuple(float(b) for b in buckets)
        self._series: dict[Labels, list[float]] = {}  # per bucket counts, then +Inf, then sum

    def observe(self, value: float, *labels: str) -> None:
        self._check(labels)
        with self._lock:
            series = self._series.get(labels)
            if series is None:
                series = self._series[labels] = [0.0] * (len(self.buckets) + 2)
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    series[i] += 1
                    break
            else:
                series[len(self.buckets)] += 1
            series[-1] += value

    def count(self, *labels: str) -> int:
        with self._lock:
            series = self._series.get(labels)
        return 0 if series is None else int(sum(series[:-1]))

    def samples(self) -> list[str]:
        with self._lock:
            found = sorted((k, list(v)) for k, v in self._series.items())
        lines: list[str] = []
        names = (*self.labelnames, "le")
        for key, series in found:
            running = 0.0
            bounds = [*map(_number, self.buckets), "+Inf"]
            for bound, n in zip(bounds, series[:-1], strict=True):
                running += n
                lines.append(
                    f"{self.name}_bucket{_labels(names, (*key, bound))} {_number(running)}"
                )
            plain = _labels(self.labelnames, key)
            lines.append(f"{self.name}_sum{plain} {_number(series[-1])}")
            lines.append(f"{self.name}_count{plain} {_number(running)}")
        return lines


def render(families: Iterable[Family]) -> str:
    """The exposition of ``families``: each one's help and type, then its samples."""
    lines: list[str] = []
    for family in families:
        lines += family.header()
        lines += family.samples()
    return "\n".join(lines) + "\n"
