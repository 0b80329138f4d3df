"""The issue's speed targets as ratios of the measurements, and the Markdown that shows them."""

from __future__ import annotations

from dataclasses import dataclass

from bench.floor import Floor
from bench.forward import ForwardReport
from bench.load import LoadResult

SERVICE, BASELINE, MLSERVER = "service", "baseline", "mlserver"
PREDICT, EXPLAIN, V2_INFER = "/predict", "/explain?method=gradcam", "/v2 infer"
WRK = " (wrk)"
"""Added to a route measured by the C client (bench.c_load) rather than the Python one."""


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


def check_targets(
    measurements: list[Measurement],
    floor: Floor,
    forward: ForwardReport,
    pass_images: int,
    cores: int = 2,
) -> list[TargetCheck]:
    """Targets at the lowest concurrency (latency) and the highest (throughput) measured;
    those against a baseline that was not run are left out. `pass_images`: the most images
    the service runs in one forward pass, the batch its GFLOP/s are read at; `cores`: the
    machine's, for what the floor's CPU per image allows."""
    low = min(m.result.concurrency for m in measurements)
    high = max(m.result.concurrency for m in measurements)
    found = {(m.service, m.route, m.result.concurrency): m.result for m in measurements}

    def p50_ratio(slow: str, fast: str, route: str, name: str, goal: float | None):
        pair = found.get((slow, route, low)), found.get((fast, route, low))
        if None not in pair:
            return _at_least(name, pair[0].p50_ms / pair[1].p50_ms, goal)
        return None

    def throughput_ratio(route: str, baseline: str, name: str, goal: float | None):
        pair = found.get((SERVICE, route, high)), found.get((baseline, route, high))
        if None not in pair:
            return _at_least(name, pair[0].requests_per_second / pair[1].requests_per_second, goal)
        return None

    predict, explain = found[(SERVICE, PREDICT, low)], found.get((SERVICE, EXPLAIN, low))
    errors = sum(m.result.errors for m in measurements if m.service == SERVICE)
    checks = [
        _at_most(
            f"/predict p50 at c={low} / floor (decode + preprocess + forward)",
            predict.p50_ms / floor.decode_and_forward_ms,
            1.3,
        ),
        p50_ratio(
            MLSERVER, SERVICE, V2_INFER, f"/v2 infer p50 speed-up over MLServer at c={low}", 2.0
        ),
        throughput_ratio(V2_INFER, MLSERVER, f"/v2 infer req/s at c={high} over MLServer", 1.2),
        throughput_ratio(
            V2_INFER + WRK, MLSERVER, f"/v2 infer req/s at c={high} over MLServer (wrk)", 1.5
        ),
        *_c_client_checks(found, floor, high, cores),
        p50_ratio(
            BASELINE,
            SERVICE,
            PREDICT,
            f"/predict p50 speed-up over the tutorial baseline at c={low}",
            8.0,
        ),
        throughput_ratio(
            PREDICT, BASELINE, f"/predict req/s at c={high} over the tutorial baseline", 8.0
        ),
        explain
        and _at_most(
            f"/explain p50 / /predict p50 at c={low}", explain.p50_ms / predict.p50_ms, 2.0
        ),
        TargetCheck("errors in the service's runs", errors, "0", errors == 0),
        *_forward_checks(forward, floor.backend, pass_images),
        floor.localise_ms is not None
        and _at_most("ms to find the white cell in a 320x240 smear", floor.localise_ms, 2.0),
        floor.white_balance_ms is not None
        and _at_most("ms to white-balance a 320x240 smear", floor.white_balance_ms, 1.0),
        floor.reference_forward_ms
        and _at_most(
            f"forward of v{floor.version} / forward of the whole-frame v3 (batch 1)",
            floor.forward_ms / floor.reference_forward_ms,
            2.0,
        ),
        p50_ratio(
            BASELINE,
            SERVICE,
            EXPLAIN,
            f"/explain p50 speed-up over the tutorial baseline at c={low}",
            None,
        ),
        throughput_ratio(
            EXPLAIN, BASELINE, f"/explain req/s at c={high} over the tutorial baseline", None
        ),
    ]
    return [check for check in checks if check]


def _c_client_checks(found: dict, floor: Floor, high: int, cores: int) -> list[TargetCheck | None]:
    """Issue 25's throughput targets under wrk: /predict against /v2, /v2 against what the
    floor's CPU per image allows on every core, and each server's CPU per request."""
    v2 = found.get((SERVICE, V2_INFER + WRK, high))
    predict = found.get((SERVICE, PREDICT + WRK, high))
    checks: list[TargetCheck | None] = []
    if v2 is not None and predict is not None:
        checks.append(
            _at_least(
                f"/predict req/s / /v2 infer req/s at c={high} (wrk)",
                predict.requests_per_second / v2.requests_per_second,
                0.9,
            )
        )
    if v2 is not None and floor.decode_and_forward_cpu_ms:
        ceiling = cores * 1000.0 / floor.decode_and_forward_cpu_ms
        checks.append(
            _at_least(
                f"/v2 infer req/s at c={high} (wrk) / {cores} cores x the floor's images per "
                f"CPU-second ({ceiling:.0f} images/s)",
                v2.requests_per_second / ceiling,
                0.6,
            )
        )
    for server in (SERVICE, MLSERVER):
        result = found.get((server, V2_INFER + WRK, high))
        cpu = getattr(result, "server_cpu_ms_per_request", None)
        if cpu is not None and floor.decode_and_forward_cpu_ms:
            checks.append(
                TargetCheck(
                    f"{server} CPU ms per /v2 infer request at c={high} (wrk) / the floor's "
                    f"CPU ms per image ({floor.decode_and_forward_cpu_ms:.1f})",
                    cpu / floor.decode_and_forward_cpu_ms,
                    None,
                    None,
                )
            )
    return checks


def _forward_checks(forward: ForwardReport, backend: str, pass_images: int) -> list[TargetCheck]:
    """The service backend's share of the matmul peak at its pass size (the nearest batch
    measured), and what ONNX Runtime adds to a cold start."""
    peak = max(forward.matmul_peak_gflops.values())
    points = [point for point in forward.curve if point.backend == backend]
    point = min(points, key=lambda p: (abs(p.batch - pass_images), p.batch))
    return [
        _at_least(
            f"{backend} forward GFLOP/s at batch {point.batch} / matmul peak ({peak:.0f} GFLOP/s)",
            point.gflops / peak,
            0.4,
        ),
        _at_most("seconds ONNX Runtime adds to a cold start", forward.onnx_added_seconds, 1.0),
    ]


def _at_most(name: str, value: float, bound: float) -> TargetCheck:
    return TargetCheck(name, value, f"<= {bound:g}", value <= bound)


def _at_least(name: str, value: float, bound: float | None) -> TargetCheck:
    if bound is None:  # shown for context
        return TargetCheck(name, value, None, None)
    return TargetCheck(name, value, f">= {bound:g}", value >= bound)


def markdown(
    measurements: list[Measurement], floor: Floor, targets: list[TargetCheck], machine: dict
) -> str:
    """Latency table, floor and targets, ready to paste into docs/benchmarks.md."""
    lines = [
        f"Machine: {machine['cpu_model']}, {machine['cpu_count']} CPUs, "
        f"{machine['platform']}, TensorFlow {machine['tensorflow']}, {machine['date']} "
        f"(1-minute load average at start: {machine['load_average_1m_at_start']:.2f})",
        "",
        "| service | route | concurrency | p50 ms | p95 ms | p99 ms | req/s | errors "
        "| server CPU ms/request |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for m in measurements:
        r = m.result
        cpu = getattr(r, "server_cpu_ms_per_request", None)
        lines.append(
            f"| {m.service} | `{m.route}` | {r.concurrency} | {r.p50_ms:.1f} | "
            f"{r.p95_ms:.1f} | {r.p99_ms:.1f} | {r.requests_per_second:.1f} | "
            f"{r.errors} | {'' if cpu is None else f'{cpu:.1f}'} |"
        )
    lines += [
        "",
        f"In-process floor (batch 1, median of {floor.samples}, forward through "
        f"{floor.backend}): decode + preprocess + forward "
        f"{floor.decode_and_forward_ms:.2f} ms"
        + (
            f" ({floor.decode_and_forward_cpu_ms:.2f} ms of CPU)"
            if floor.decode_and_forward_cpu_ms
            else ""
        )
        + f"; forward alone {floor.forward_ms:.2f} ms"
        + (
            f"; finding the cell {floor.localise_ms:.2f} ms, finding it and cutting the "
            f"window {floor.prepare_ms:.2f} ms"
            if floor.localise_ms is not None
            else ""
        )
        + (
            f"; white balance {floor.white_balance_ms:.2f} ms"
            if floor.white_balance_ms is not None
            else ""
        )
        + (
            f"; reading the stain from the red cells {floor.stain_read_ms:.2f} ms"
            if floor.stain_read_ms is not None
            else ""
        )
        + (
            f"; v3's forward {floor.reference_forward_ms:.2f} ms"
            if floor.reference_forward_ms
            else ""
        )
        + ".",
        "",
        "| measure | value | target | met |",
        "| --- | ---: | --- | --- |",
    ]
    for target in targets:
        met = {True: "yes", False: "**no**", None: ""}[target.met]
        value = str(target.value) if isinstance(target.value, int) else f"{target.value:.2f}"
        lines.append(f"| {target.name} | {value} | {target.goal or '(context)'} | {met} |")
    return "\n".join(lines)
