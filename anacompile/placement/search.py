"""``place``: the cheapest analog/digital placement and per-layer strategies within a metric budget.

Each analog-capable layer takes one of: the compiled strategy (``single``, one pair), ``dual`` (two
pairs, F = 2), three pairs (``npair:significance=1,2,4``), or ``digital``. A placement's cost is ordered
(fewest digital MACs, then fewest devices = 2 x pairs x weights). It must keep the metric at time ``at``
within ``budget`` of the FP32 model's (absolute, in the metric's units: 0.02 is two points of accuracy).

The search is sensitivity-ordered and spends few evaluations (each: every search chip at ``at``, on one
switchable session, :mod:`anacompile.placement._evaluator`):

1. all layers at the compiled strategy; if within budget, done;
2. every layer's loss alone analog (the sensitivity, one config per layer);
3. all layers at three pairs; if not within budget, the fewest most sensitive layers made digital
   (bisection over the sensitivity order, the rest at three pairs), then digital layers given back to
   analog where the budget allows, largest MACs first;
4. devices saved: the largest least-sensitive prefix of the analog layers put back to one pair
   (bisection), then of the rest to two pairs.

During the search a config must meet the budget with a reserve (``margin`` x budget) for chip-to-chip
spread. The placement found is compiled (:func:`~anacompile.compiler.compile_model` with ``digital=``
and ``layer_strategies=``, exactly what replaying its JSON does) and verified over fresh chips (another
experiment seed); if the fresh chips miss the budget, the search steps back (the downgrades of step 4
undone, then one more digital layer) and verifies again, up to ``max_rounds`` times. Monotonicity of
the metric in the placement is assumed by the bisections; the final verification does not assume it.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anacompile.errors import ConfigError
from anacompile.evaluate.metrics import Metric
from anacompile.evaluate.times import format_time, parse_times
from anacompile.mapping.registry import get_mapping
from anacompile.model_io import atomic_output, check_output_path
from anacompile.passes.apply_placement import Placement
from anacompile.placement._evaluator import DIGITAL, ConfigEvaluator
from anacompile.placement._prepare import analog_plan, is_compiled

__all__ = ["CANDIDATE_STRATEGIES", "PlacementResult", "SearchStep", "place"]

logger = logging.getLogger(__name__)

CANDIDATE_STRATEGIES = ("single", "dual", "npair:significance=1,2,4")
"""Analog strategies the search chooses from, cheapest first (1, 2, 3 pairs)."""
STRONG = CANDIDATE_STRATEGIES[-1]


@dataclass
class SearchStep:
    """One evaluated config of the search."""

    stage: str
    digital: list[str]
    layer_strategies: dict[str, str]
    metric_mean: float
    metric_std: float
    analog_mac_share: float
    devices: int
    meets: bool


@dataclass
class PlacementResult:
    """What the placement search found, and its verification on fresh chips."""

    model: str
    output: str
    placement_path: str
    metric: str
    baseline: float
    budget: float
    at_s: float
    target: float
    digital: list[str]
    layer_strategies: dict[str, str]
    reasons: dict[str, str]
    analog_mac_share: float
    analog_parameter_share: float
    devices: int
    search_chips: int
    search_metric: float
    verify_chips: int
    verify_seed: int
    verified_mean: float
    verified_std: float
    meets_budget: bool
    evaluations: int
    ranking: list[str] = field(default_factory=list)
    layer_loss: dict[str, float] = field(default_factory=dict)
    steps: list[SearchStep] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def placement_dict(self) -> dict[str, Any]:
        """The placement JSON: replayable with ``compile --digital @FILE`` (digital, strategies, reasons),
        plus the search's record."""
        d = {
            "format": "anacompile.placement",
            "version": 1,
            "digital": self.digital,
            "layer_strategies": self.layer_strategies,
            "reasons": self.reasons,
        }
        d.update({k: v for k, v in asdict(self).items() if k not in d})
        d["at"] = format_time(self.at_s)
        return d


def _devices(config: dict[str, str], params: dict[str, int], default: str) -> int:
    total = 0
    for name, p in params.items():
        spec = config.get(name, default)
        if spec != DIGITAL:
            total += 2 * len(get_mapping(spec).significance) * p
    return total


def place(
    model: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    accuracy_budget: float,
    at: str | float = "1d",
    metric: str | Metric | None = None,
    data: str | os.PathLike[str] | None = None,
    chips: int = 3,
    verify_chips: int = 5,
    seed: int = 0,
    verify_seed: int | None = None,
    margin: float = 0.25,
    max_rounds: int = 3,
    compensation: str | None = None,
    placement_path: str | os.PathLike[str] | None = None,
    plot: str | os.PathLike[str] | None = None,
    force: bool = False,
    progress=None,
    **compile_options: Any,
) -> PlacementResult:
    """Find, compile and verify the cheapest placement within ``accuracy_budget`` at ``at`` (module docstring).

    Args:
        model: source ONNX model.
        output: compiled model to write (default ``<model>.analog.onnx``); the placement JSON goes to
            ``placement_path`` (default ``<output stem>.placement.json``).
        accuracy_budget: allowed metric loss against FP32 (absolute, the metric's units).
        at: time since programming the budget holds at.
        metric: built-in name, ``FILE.py:FUNCTION`` or callable ``metric(run) -> float``; ``data`` for
            built-in metrics.
        chips: chips per search evaluation; ``verify_chips``: fresh chips of the final verification, of
            experiment seed ``verify_seed`` (default ``seed + 1``: independent of the search's chips).
        seed: compile and search seed.
        margin: share of the budget kept in reserve during the search.
        max_rounds: verifications before giving up (each after stepping back).
        compensation: drift compensation override for the evaluations.
        plot: write the metric vs analog MAC fraction of the search's configs.
        compile_options: ``device``, ``periphery``, ``periphery_overrides``, ``calibration``, ``programming``,
            ``input_ranges`` as :func:`~anacompile.compiler.compile_model` takes them.

    Raises:
        ConfigError: bad budget/time/chips, a compiled model given, or options that clash.
    """
    from anacompile.compiler import compile_model, default_output_path

    if not np.isfinite(accuracy_budget) or accuracy_budget < 0:
        raise ConfigError(f"--accuracy-budget {accuracy_budget}: must be a number >= 0 (e.g. 0.02).")
    if chips < 1 or verify_chips < 1:
        raise ConfigError("--chips: the search and the verification need at least one chip each.")
    if not 0 <= margin < 1:
        raise ConfigError(f"margin={margin}: must be in [0, 1).")
    for key in ("digital", "layer_strategies"):
        if compile_options.get(key):
            raise ConfigError(f"--accuracy-budget chooses the placement itself; drop --{key.replace('_', '-')}.")
        compile_options.pop(key, None)
    if is_compiled(model):
        raise ConfigError(f"{model} is already compiled; --accuracy-budget compiles a source ONNX model.")
    (at_s,) = parse_times([at] if not isinstance(at, str) else at)
    out = check_output_path(output if output is not None else default_output_path(model), [model], force)
    stem = out.name[: -len(".onnx")] if out.name.endswith(".onnx") else out.name
    json_path = check_output_path(placement_path or out.with_name(stem + ".placement.json"), [model], force)
    if plot is not None:
        check_output_path(plot, [model], force)
    default = compile_options.get("strategy", "single")
    if get_mapping(default).to_dict() != get_mapping("single").to_dict():
        raise ConfigError(
            "--accuracy-budget chooses each layer's strategy among single, dual and three pairs; drop --strategy."
        )
    compile_options = {**compile_options, "seed": seed}
    with analog_plan(model, compile_options) as plan:
        ev = ConfigEvaluator(plan, metric, data, chips, seed=seed, compensation=compensation, progress=progress)
        from anacompile.evaluate.monte_carlo import evaluate

        search = _Search(ev, at_s, accuracy_budget, margin)
        config = search.run()
        verify_seed = seed + 1 if verify_seed is None else int(verify_seed)
        result = None
        for round_ in range(max_rounds):
            digital = [n for n, v in config.items() if v == DIGITAL]
            strategies = {n: v for n, v in config.items() if v != DIGITAL and v != "single"}
            reasons = {
                n: (
                    f"placement: alone analog it costs {search.loss[n]:.4g} {ev.metric_name} at "
                    f"{format_time(at_s)} (budget {accuracy_budget:g})"
                )
                for n in digital
            }
            # compiled exactly as replaying the placement JSON compiles it (compile --digital @placement.json)
            report = compile_model(
                model, out, force=True, digital=Placement(digital, strategies, reasons), **compile_options
            )
            check = evaluate(
                out,
                data=data,
                times=[at_s],
                chips=verify_chips,
                seed=verify_seed,
                compensation=compensation,
                metric=ev.metric,
            )
            ok = check.accuracy_mean[0] >= search.target
            logger.info(
                "round %d: verified %s %.4f (target %.4f) on %d fresh chips",
                round_,
                ev.metric_name,
                check.accuracy_mean[0],
                search.target,
                verify_chips,
            )
            t = report.totals
            result = PlacementResult(
                model=str(model),
                output=str(out),
                placement_path=str(json_path),
                metric=ev.metric_name,
                baseline=ev.baseline,
                budget=float(accuracy_budget),
                at_s=at_s,
                target=search.target,
                digital=digital,
                layer_strategies=strategies,
                reasons=reasons,
                analog_mac_share=t["analog_mac_share"],
                analog_parameter_share=t["analog_parameter_share"],
                devices=t["devices"],
                search_chips=chips,
                search_metric=search.metric_of(config),
                verify_chips=verify_chips,
                verify_seed=verify_seed,
                verified_mean=check.accuracy_mean[0],
                verified_std=check.accuracy_std[0],
                meets_budget=bool(ok),
                evaluations=ev.evaluations,
                ranking=search.ranking,
                layer_loss=search.loss,
                steps=search.steps,
                notes=list(search.notes),
            )
            if ok:
                break
            stepped = search.step_back(config)
            if stepped is None:
                result.notes.append("the most conservative placement still misses the budget on fresh chips")
                break
            result.notes.append(
                f"round {round_ + 1}: fresh chips gave {check.accuracy_mean[0]:.4g} < target "
                f"{search.target:.4g}; stepped back"
            )
            config = stepped
    # the JSON last: a replayable placement exists only for a compiled, verified output
    doc = result.placement_dict()
    with atomic_output(json_path) as tmp:
        Path(tmp).write_text(json.dumps(doc, indent=2))
    if plot is not None:
        from anacompile.placement.plot import plot_search

        plot_search(result, plot)
    return result


class _Search:
    """The sensitivity-ordered search over configs (module docstring)."""

    def __init__(self, ev: ConfigEvaluator, at_s: float, budget: float, margin: float) -> None:
        self.ev, self.at_s = ev, at_s
        self.target = ev.baseline - budget
        self.search_target = ev.baseline - budget * (1.0 - margin)
        self.params = {la.name: la.parameters for la in ev.layers}
        self.macs = {la.name: la.macs for la in ev.layers}
        self.total_macs = max(sum(self.macs.values()), 1)
        self.steps: list[SearchStep] = []
        self.notes: list[str] = []
        self.cache: dict[str, tuple[float, float]] = {}
        self.loss: dict[str, float] = {}
        self.ranking: list[str] = []

    def _key(self, config: dict[str, str]) -> str:
        return json.dumps(sorted((n, v) for n, v in config.items() if v != "single"))

    def evaluate(self, configs: list[dict[str, str]], stage: str) -> list[bool]:
        todo = [c for c in configs if self._key(c) not in self.cache]
        if todo:
            s = self.ev.scores(todo, [self.at_s])[:, :, 0]
            for c, row in zip(todo, s, strict=True):
                self.cache[self._key(c)] = (float(row.mean()), float(row.std()))
                digital = sorted(n for n, v in c.items() if v == DIGITAL)
                analog_macs = sum(m for n, m in self.macs.items() if c.get(n) != DIGITAL)
                self.steps.append(
                    SearchStep(
                        stage=stage,
                        digital=digital,
                        layer_strategies={n: v for n, v in c.items() if v != DIGITAL},
                        metric_mean=float(row.mean()),
                        metric_std=float(row.std()),
                        analog_mac_share=analog_macs / self.total_macs,
                        devices=_devices(c, self.params, "single"),
                        meets=bool(row.mean() >= self.search_target),
                    )
                )
        return [self.cache[self._key(c)][0] >= self.search_target for c in configs]

    def metric_of(self, config: dict[str, str]) -> float:
        return self.cache.get(self._key(config), (float("nan"), 0.0))[0]

    def _bisect(self, make, n: int, stage: str, want_largest: bool) -> int:
        """Largest k in [0, n] with make(k) meeting the budget (want_largest), or smallest k in [1, n]."""
        if want_largest:
            lo, hi = 0, n  # make(0) is known to meet
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if self.evaluate([make(mid)], stage)[0]:
                    lo = mid
                else:
                    hi = mid - 1
            return lo
        lo, hi = 1, n  # make(n) is known (or assumed) to meet
        while lo < hi:
            mid = (lo + hi) // 2
            if self.evaluate([make(mid)], stage)[0]:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def run(self) -> dict[str, str]:
        names = self.ev.names
        if self.evaluate([{}], "all single")[0]:
            self.notes.append("every layer analog with one pair meets the budget")
            self.ranking = list(names)
            return {}
        alone = [{m: DIGITAL for m in names if m != n} for n in names]  # only n analog, one pair
        self.evaluate(alone, "sensitivity")
        self.loss = {n: self.ev.baseline - self.metric_of(c) for n, c in zip(names, alone, strict=True)}
        self.ranking = sorted(names, key=lambda n: (-self.loss[n], self.macs[n], n))
        strong = {n: STRONG for n in names}
        digital: list[str] = []
        if not self.evaluate([strong], "all three pairs")[0]:

            def with_digital(k: int) -> dict[str, str]:
                return {**strong, **{n: DIGITAL for n in self.ranking[:k]}}

            full = len(names)
            k = self._bisect(with_digital, full, "digital layers", want_largest=False)
            if not self.evaluate([with_digital(k)], "digital layers")[0]:
                k = full
                self.notes.append("no partly analog placement met the budget in the search: all layers digital")
            digital = list(self.ranking[:k])
            for n in sorted(digital, key=lambda n: -self.macs[n]):  # give back the costliest digital layers
                trial = {**strong, **{m: DIGITAL for m in digital if m != n}}
                if self.evaluate([trial], "give back")[0]:
                    digital.remove(n)
        base = {**strong, **{n: DIGITAL for n in digital}}
        analog = [n for n in reversed(self.ranking) if n not in digital]  # least sensitive first

        def downgrade(prefix: list[str], spec: str, start: dict[str, str]):
            return lambda k: {**start, **{n: spec for n in prefix[:k]}}

        k1 = self._bisect(downgrade(analog, "single", base), len(analog), "one pair", want_largest=True)
        base = downgrade(analog, "single", base)(k1)
        rest = analog[k1:]
        k2 = self._bisect(downgrade(rest, "dual", base), len(rest), "two pairs", want_largest=True)
        config = downgrade(rest, "dual", base)(k2)
        return {n: v for n, v in config.items() if v != "single"}

    def step_back(self, config: dict[str, str]) -> dict[str, str] | None:
        """A more conservative config: every analog layer at three pairs, else one more digital layer."""
        names = self.ev.names
        digital = [n for n in self.ranking if config.get(n) == DIGITAL]
        strongest = {**{n: STRONG for n in names}, **{n: DIGITAL for n in digital}}
        if config != strongest:
            return strongest
        nxt = next((n for n in self.ranking if n not in digital), None)
        if nxt is None:
            return None
        return {**{n: STRONG for n in names}, **{n: DIGITAL for n in [*digital, nxt]}}
