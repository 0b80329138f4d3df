"""The issue's speed targets as ratios of the measurements, and the Markdown that shows them."""

from __future__ import annotations

from dataclasses import dataclass

from bench.floor import Floor
from bench.load import LoadResult

SERVICE, BASELINE = "service", "baseline"
PREDICT, EXPLAIN = "/predict", "/explain?method=gradcam"


@dataclass
class Measurement:
    """One service's route at one concurrency."""

    service: str
    route: str
    result: LoadResult


@dataclass
class TargetCheck:
    """A ratio the issue sets a target for (or, with no goal, one shown for context)."""

    name: str
    value: float | int
    goal: str | None
    met: bool | None


def check_targets(measurements: list[Measurement], floor: Floor) -> list[TargetCheck]:
    """Targets at the lowest concurrency (latency) and the highest (throughput) measured."""
    low = min(m.result.concurrency for m in measurements)
    high = max(m.result.concurrency for m in measurements)

    def result(service: str, route: str, concurrency: int) -> LoadResult:
        return next(m.result for m in measurements
                    if (m.service, m.route, m.result.concurrency) == (service, route, concurrency))

    predict, explain = result(SERVICE, PREDICT, low), result(SERVICE, EXPLAIN, low)
    errors = sum(m.result.errors for m in measurements if m.service == SERVICE)
    return [
        _at_most(f"/predict p50 at c={low} / floor (decode + forward)",
                 predict.p50_ms / floor.decode_and_forward_ms, 1.5),
        _at_least(f"/predict p50 speed-up over the baseline at c={low}",
                  result(BASELINE, PREDICT, low).p50_ms / predict.p50_ms, 8.0),
        _at_least(f"/predict req/s at c={high} over the baseline",
                  result(SERVICE, PREDICT, high).requests_per_second
                  / result(BASELINE, PREDICT, high).requests_per_second, 8.0),
        _at_most(f"/explain p50 / /predict p50 at c={low}", explain.p50_ms / predict.p50_ms, 2.0),
        TargetCheck("errors in the service's runs", errors, "0", errors == 0),
        TargetCheck(f"/explain p50 speed-up over the baseline at c={low}",
                    result(BASELINE, EXPLAIN, low).p50_ms / explain.p50_ms, None, None),
        TargetCheck(f"/explain req/s at c={high} over the baseline",
                    result(SERVICE, EXPLAIN, high).requests_per_second
                    / result(BASELINE, EXPLAIN, high).requests_per_second, None, None),
    ]


def _at_most(name: str, value: float, bound: float) -> TargetCheck:
    return TargetCheck(name, value, f"<= {bound:g}", value <= bound)


def _at_least(name: str, value: float, bound: float) -> TargetCheck:
    return TargetCheck(name, value, f">= {bound:g}", value >= bound)


def markdown(measurements: list[Measurement], floor: Floor, targets: list[TargetCheck],
             machine: dict) -> str:
    """Latency table, floor and targets, ready to paste into docs/benchmarks.md."""
    lines = [f"Machine: {machine['cpu_model']}, {machine['cpu_count']} CPUs, "
             f"{machine['platform']}, TensorFlow {machine['tensorflow']}, {machine['date']} "
             f"(1-minute load average at start: {machine['load_average_1m_at_start']:.2f})", "",
             "| service | route | concurrency | p50 ms | p95 ms | p99 ms | req/s | errors |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for m in measurements:
        r = m.result
        lines.append(f"| {m.service} | `{m.route}` | {r.concurrency} | {r.p50_ms:.1f} | "
                     f"{r.p95_ms:.1f} | {r.p99_ms:.1f} | {r.requests_per_second:.1f} | "
                     f"{r.errors} |")
    lines += ["", f"In-process floor (batch 1, median of {floor.samples}): decode + preprocess + "
              f"compiled forward {floor.decode_and_forward_ms:.2f} ms; compiled forward alone "
              f"{floor.forward_ms:.2f} ms.", "",
              "| measure | value | target | met |", "| --- | ---: | --- | --- |"]
    for target in targets:
        met = {True: "yes", False: "**no**", None: ""}[target.met]
        value = str(target.value) if isinstance(target.value, int) else f"{target.value:.2f}"
        lines.append(f"| {target.name} | {value} | {target.goal or '(context)'} | {met} |")
    return "\n".join(lines)
