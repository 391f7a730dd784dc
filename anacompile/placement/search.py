"""``place``: the cheapest analog/digital placement and per-layer strategies within a metric budget.

Each analog-capable layer takes one of: the compiled strategy (``single``, one pair), ``dual`` (two
pairs, F = 2), three pairs (``npair:significance=1,2,4``), or ``digital``. A placement's cost is ordered
(fewest digital MACs, then fewest devices = 2 x pairs x weights). It must keep the metric at time ``at``
within ``budget`` of the FP32 model's (absolute, in the metric's units: 0.02 is two points of accuracy).

Decisions are statistical (:mod:`anacompile.placement._stats`): a config's metric is a mean over chips
with a standard error that includes the chip-to-chip spread and the metric's granularity; during the
search a config meets the budget when ``mean - SE >= target`` (the one-standard-error rule, on the few
search chips), and a placement is only returned as meeting the budget when its lower confidence bound
``mean - t_{c, n-1} SE`` over ``verify_chips`` fresh chips (another experiment seed) clears the target.

The search spends few evaluations (each: every search chip at ``at``, on one switchable session with
common random numbers, :mod:`anacompile.placement._evaluator`):

1. all layers at the compiled strategy; if within budget, done;
2. every layer's loss alone analog (the sensitivity, one config per layer); layers are put digital in
   the order of loss per MAC (most loss saved per digital MAC first; layers without a measured loss last,
   fewest MACs first), the cheapest first for the cost above;
3. all layers at three pairs; if not within budget, the shortest prefix of that order made digital
   (bisection, the rest at three pairs). At least one layer stays analog;
4. devices saved: the largest least-sensitive prefix of the analog layers put back to one pair
   (bisection), then of the rest to two pairs.

The placement found is compiled (:func:`~anacompile.compiler.compile_model` with ``digital=`` and
``layer_strategies=``, exactly what replaying its JSON does) and verified over fresh chips. When they
miss, the search steps back and verifies again on chips of yet another seed: first the device savings of
step 4 are undone (every analog layer at three pairs); then the next layers of the digital order are made
digital, as many as the measured shortfall needs by their losses alone, and at least twice as many as the
previous step added (so a long model reaches the end in log2(L) rounds). The last resort keeps only one
layer analog at three pairs: of the three layers with the least loss alone (ties: the largest), the one the
search chips rate best, then the next ones in turn. If even those miss, the result says so
(``meets_budget`` false, with a note). The bisections assume the metric is monotone in
the placement; the verification does not.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anacompile.contract import CHIP_STATE_FULL
from anacompile.errors import ConfigError
from anacompile.evaluate.metrics import Metric
from anacompile.evaluate.times import format_time, parse_times
from anacompile.mapping.registry import get_mapping
from anacompile.model_io import atomic_output, check_output_path
from anacompile.passes.apply_placement import Placement
from anacompile.passes.deploy_form import SIMULATION
from anacompile.passes.pipeline import check_output_form
from anacompile.placement._evaluator import DIGITAL, ConfigEvaluator
from anacompile.placement._prepare import is_compiled, plan_evaluator
from anacompile.placement._stats import Estimate, estimate, granularity, t_quantile

__all__ = ["CANDIDATE_STRATEGIES", "PlacementResult", "SearchStep", "VerifyRound", "place"]

logger = logging.getLogger(__name__)

CANDIDATE_STRATEGIES = ("single", "dual", "npair:significance=1,2,4")
"""Analog strategies the search chooses from, cheapest first (1, 2, 3 pairs)."""
STRONG = CANDIDATE_STRATEGIES[-1]
RESORT_CANDIDATES = 3
"""Layers tried alone analog, one after the other, as the last resort."""
SEARCH_K = 1.0
"""Standard errors below the mean a search config's metric must clear the target by (one-SE rule)."""


@dataclass
class SearchStep:
    """One evaluated config of the search (on the search chips)."""

    stage: str
    digital: list[str]
    layer_strategies: dict[str, str]
    metric_mean: float
    metric_std: float
    analog_mac_share: float
    devices: int
    meets: bool
    metric_se: float = 0.0
    metric_lcb: float = 0.0


@dataclass
class VerifyRound:
    """One compiled placement verified on fresh chips."""

    seed: int
    chips: int
    digital: list[str]
    layer_strategies: dict[str, str]
    analog_mac_share: float
    scores: list[float]
    mean: float
    std: float
    se: float
    lcb: float
    passed: bool


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
    verified_se: float = 0.0
    verified_lcb: float = 0.0
    confidence: float = 0.95
    granularity: float = 0.0
    search_se: float = 0.0
    unexercised: list[str] = field(default_factory=list)
    analog_mac_share_exercised: float = 0.0
    ranking: list[str] = field(default_factory=list)
    digital_order: list[str] = field(default_factory=list)
    layer_loss: dict[str, float] = field(default_factory=dict)
    steps: list[SearchStep] = field(default_factory=list)
    rounds: list[VerifyRound] = field(default_factory=list)
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


def _exercised_share(report, unexercised: list[str]) -> float:
    """Analog share of the MACs of the layers the calibration data reached."""
    rows = [r for r in report.layers if r.name not in set(unexercised)]
    total = sum(r.macs for r in rows)
    return sum(r.macs for r in rows if r.analog) / total if total else 0.0


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
    verify_chips: int = 8,
    seed: int = 0,
    verify_seed: int | None = None,
    confidence: float = 0.95,
    max_rounds: int = 8,
    compensation: str | None = None,
    placement_path: str | os.PathLike[str] | None = None,
    plot: str | os.PathLike[str] | None = None,
    force: bool = False,
    progress=None,
    providers: str | list[str] | None = None,
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
        chips: chips per search evaluation (>= 2: the standard error needs two); ``verify_chips``: fresh
            chips per verification (>= 2), round r on experiment seed ``verify_seed + r`` (default
            ``verify_seed = seed + 1``; never the search's seed).
        seed: compile and search seed.
        confidence: one-sided confidence of the verification's lower bound (``mean - t SE >= target``).
        max_rounds: verifications at most; the last one verifies the last resort (one layer analog).
        compensation: drift compensation override for the evaluations.
        plot: write the metric vs analog MAC fraction of the search's configs.
        providers: onnxruntime execution providers of the search's and the verifications' sessions
            (``"cuda"``; :mod:`anacompile.runtime.providers`; default the CPU); one that is not available is a
            one-line ConfigError naming the available ones, raised before anything is compiled.
        compile_options: :func:`~anacompile.compiler.compile_model`'s other options (``device``,
            ``periphery``, ``periphery_overrides``, ``calibration``, ``chip``, ``programming``, ``input_ranges``,
            ``shared_weights``, ``allow_invalid``, ``chip_state``, ``target``), applied to the output. The
            search and its verification evaluate the simulation form; with ``target="deploy"`` the placement
            verified is compiled to the deployment form last.

    Raises:
        ConfigError: bad budget/time/chips/confidence, a compiled model given, or options that clash.
    """
    from anacompile.compiler import compile_model, default_output_path

    if not np.isfinite(accuracy_budget) or accuracy_budget < 0:
        raise ConfigError(f"--accuracy-budget {accuracy_budget}: must be a number >= 0 (e.g. 0.02).")
    if chips < 2 or verify_chips < 2:
        raise ConfigError(
            f"--chips {chips} / --verify-chips {verify_chips}: the placement search and its verification need "
            "at least 2 chips each (a standard error over chips needs two)."
        )
    if not 0.5 <= confidence < 1:
        raise ConfigError(f"--confidence {confidence}: must be in [0.5, 1) (e.g. 0.95).")
    if max_rounds < 1:
        raise ConfigError(f"max_rounds={max_rounds}: must be >= 1.")
    for key in ("digital", "layer_strategies"):
        if compile_options.get(key):
            raise ConfigError(f"--accuracy-budget chooses the placement itself; drop --{key.replace('_', '-')}.")
        compile_options.pop(key, None)
    if is_compiled(model):
        raise ConfigError(f"{model} is already compiled; --accuracy-budget compiles a source ONNX model.")
    target = compile_options.pop("target", SIMULATION)  # what is evaluated is the simulation form
    check_output_form(target, compile_options.get("chip_state", CHIP_STATE_FULL))
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
    with plan_evaluator(model, compile_options, providers, metric, data, chips, seed, compensation, progress) as ev:
        from anacompile.evaluate.monte_carlo import evaluate

        search = _Search(ev, at_s, accuracy_budget)
        config = search.run()
        first_seed = seed + 1 if verify_seed is None else int(verify_seed)
        seeds = [s for s in range(first_seed, first_seed + max_rounds + 1) if s != seed][:max_rounds]
        k_verify = t_quantile(confidence, verify_chips - 1)
        rounds: list[VerifyRound] = []
        result = None
        for round_, vseed in enumerate(seeds):
            digital = [n for n in search.order if config.get(n) == DIGITAL]
            strategies = {n: config[n] for n in ev.names if config.get(n) not in (None, DIGITAL, "single")}
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
                seed=vseed,
                compensation=compensation,
                metric=ev.metric,
                providers=ev.session.providers,
            )
            chip_scores = [float(row[0]) for row in check.accuracy]
            search.values.extend(chip_scores)
            est = estimate(chip_scores, search.step, k_verify)
            ok = est.meets(search.target)
            t = report.totals
            rounds.append(
                VerifyRound(
                    seed=vseed,
                    chips=verify_chips,
                    digital=digital,
                    layer_strategies=strategies,
                    analog_mac_share=t["analog_mac_share"],
                    scores=chip_scores,
                    mean=est.mean,
                    std=est.std,
                    se=est.se,
                    lcb=est.lcb,
                    passed=bool(ok),
                )
            )
            logger.info(
                "round %d: %s %.4f +- %.4f (SE), lower bound %.4f, target %.4f, %d fresh chips of seed %d: %s",
                round_,
                ev.metric_name,
                est.mean,
                est.se,
                est.lcb,
                search.target,
                verify_chips,
                vseed,
                "passes" if ok else "misses",
            )
            s_est = search.estimate(config)
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
                search_metric=s_est.mean if s_est else float("nan"),
                search_se=s_est.se if s_est else float("nan"),
                verify_chips=verify_chips,
                verify_seed=vseed,
                verified_mean=est.mean,
                verified_std=est.std,
                verified_se=est.se,
                verified_lcb=est.lcb,
                confidence=float(confidence),
                granularity=search.step,
                meets_budget=bool(ok),
                unexercised=list(ev.unexercised),
                analog_mac_share_exercised=_exercised_share(report, ev.unexercised),
                evaluations=ev.evaluations,
                ranking=search.ranking,
                digital_order=search.order,
                layer_loss=search.loss,
                steps=search.steps,
                rounds=list(rounds),
                notes=list(search.notes),
            )
            for r in rounds[:-1]:
                result.notes.append(
                    f"fresh chips (seed {r.seed}) gave {r.mean:.4g} +- {r.se:.2g} (SE), lower bound {r.lcb:.4g} "
                    f"< target {search.target:.4g}: stepped back"
                )
            if ok:
                break
            resorts = search.resorts()
            at = next((i for i, r in enumerate(resorts) if search.same(config, r)), None)
            if at is not None and (at + 1 == len(resorts) or round_ == len(seeds) - 1):
                tried = [search.analog_of(r)[0] for r in resorts[: at + 1]]
                result.notes.append(
                    f"even the last resort (one layer analog at three pairs; tried {', '.join(tried)}) misses the "
                    f"budget on fresh chips: {est.mean:.4g} +- {est.se:.2g} (SE) vs target {search.target:.4g}"
                )
                break
            if at is not None:  # the next least sensitive layer alone
                config = resorts[at + 1]
                continue
            if round_ == len(seeds) - 1:
                result.notes.append(f"no placement passed within {max_rounds} verification rounds")
                break
            last = round_ == len(seeds) - 2  # the next round is the last one: verify the last resort
            config = search.step_back(config, search.target - est.lcb, last_resort=last)
        assert result is not None
        if target != SIMULATION:  # the verified placement, in the form asked for
            placed = Placement(result.digital, result.layer_strategies, result.reasons)
            compile_model(model, out, force=True, digital=placed, target=target, **compile_options)
        if search.step > accuracy_budget / 2:
            result.notes.append(
                f"the metric moves in steps of {search.step:.3g}, coarse against the budget {accuracy_budget:g}: "
                "decisions are uncertain; use more data"
            )
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

    def __init__(self, ev: ConfigEvaluator, at_s: float, budget: float) -> None:
        self.ev, self.at_s = ev, at_s
        self.target = ev.baseline - budget
        self.params = {la.name: la.parameters for la in ev.layers}
        self.macs = {la.name: la.macs for la in ev.layers}
        self.total_macs = max(sum(self.macs.values()), 1)
        self.steps: list[SearchStep] = []
        self.notes: list[str] = []
        self.cache: dict[str, np.ndarray] = {}
        self.values: list[float] = [ev.baseline]  # every score seen: the metric's granularity
        self.loss: dict[str, float] = {}
        self.ranking: list[str] = list(ev.names)
        self.order: list[str] = list(ev.names)
        self.names: list[str] = list(ev.names)  # the layers the search places (exercised by the data)
        self._resorts: list[dict[str, str]] | None = None
        self.grow = 1

    @property
    def step(self) -> float:
        """The metric's granularity: the smallest step between distinct scores seen so far."""
        return granularity(self.values)

    def _key(self, config: dict[str, str]) -> str:
        return json.dumps(sorted((n, v) for n, v in config.items() if v != "single"))

    def estimate(self, config: dict[str, str]) -> Estimate | None:
        """The search chips' estimate of an evaluated config (one-SE rule), or None."""
        row = self.cache.get(self._key(config))
        return None if row is None else estimate(row, self.step, SEARCH_K)

    def evaluate(self, configs: list[dict[str, str]], stage: str) -> list[bool]:
        todo = [c for c in configs if self._key(c) not in self.cache]
        if todo:
            s = self.ev.scores(todo, [self.at_s])[:, :, 0]
            self.values.extend(float(v) for v in s.ravel())
            for c, row in zip(todo, s, strict=True):
                self.cache[self._key(c)] = row
                e = estimate(row, self.step, SEARCH_K)
                digital = sorted(n for n, v in c.items() if v == DIGITAL)
                analog_macs = sum(m for n, m in self.macs.items() if c.get(n) != DIGITAL)
                self.steps.append(
                    SearchStep(
                        stage=stage,
                        digital=digital,
                        layer_strategies={n: v for n, v in c.items() if v != DIGITAL},
                        metric_mean=e.mean,
                        metric_std=e.std,
                        analog_mac_share=analog_macs / self.total_macs,
                        devices=_devices(c, self.params, "single"),
                        meets=e.meets(self.target),
                        metric_se=e.se,
                        metric_lcb=e.lcb,
                    )
                )
                if stage != "sensitivity":
                    logger.info(
                        "%s: %d digital, %.4f +- %.4f (SE) -> %s",
                        stage,
                        len(digital),
                        e.mean,
                        e.se,
                        "meets" if e.meets(self.target) else "misses",
                    )
        return [self.estimate(c).meets(self.target) for c in configs]

    def metric_of(self, config: dict[str, str]) -> float:
        e = self.estimate(config)
        return float("nan") if e is None else e.mean

    def _bisect(self, make, lo: int, hi: int, stage: str, want_largest: bool) -> int:
        """Largest k in [lo, hi] with make(k) meeting the budget, make(lo) known to (want_largest); or the
        smallest k in [lo, hi], make(hi) known or assumed to."""
        if want_largest:
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if self.evaluate([make(mid)], stage)[0]:
                    lo = mid
                else:
                    hi = mid - 1
            return lo
        while lo < hi:
            mid = (lo + hi) // 2
            if self.evaluate([make(mid)], stage)[0]:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def run(self) -> dict[str, str]:
        everything = self.ev.names
        if self.evaluate([{}], "all single")[0]:
            self.notes.append("every layer analog with one pair meets the budget in the search")
            return {}
        unseen = set(self.ev.unexercised)
        names = self.names = [n for n in everything if n not in unseen] or everything
        if unseen and names is not everything:
            self.notes.append(
                f"{len(unseen)} layer(s) that no calibration data reached stay analog on one pair, outside the "
                f"search (the metric's data cannot exercise them either): {', '.join(sorted(unseen))}"
            )
        alone = [{m: DIGITAL for m in everything if m != n} for n in names]  # only n analog, one pair
        self.evaluate(alone, "sensitivity")
        self.loss = {n: self.ev.baseline - self.metric_of(c) for n, c in zip(names, alone, strict=True)}
        self.ranking = sorted(names, key=lambda n: (-self.loss[n], self.macs[n], n))

        def order_key(n: str) -> tuple:
            loss = self.loss[n]
            if loss > 0:  # most loss saved per digital MAC first
                return (0, -loss / max(self.macs[n], 1), self.macs[n], n)
            return (1, self.macs[n], -loss, n)  # no measured loss: the cheapest first, the largest last

        self.order = sorted(names, key=order_key)
        strong = {n: STRONG for n in names}
        digital: list[str] = []
        if not self.evaluate([strong], "all three pairs")[0]:
            if len(names) == 1:
                self.notes.append("the only analog layer misses the budget even with three pairs in the search")
                return strong

            def with_digital(k: int) -> dict[str, str]:
                return {**strong, **{n: DIGITAL for n in self.order[:k]}}

            most = len(names) - 1  # at least one layer stays analog
            k = self._bisect(with_digital, 1, most, "digital layers", want_largest=False)
            if not self.evaluate([with_digital(k)], "digital layers")[0]:
                resort = self.last_resort()
                self.notes.append(
                    f"no placement with analog layers met the budget in the search: the last resort keeps only "
                    f"{self.analog_of(resort)[0]} analog"
                )
                return resort
            digital = list(self.order[:k])
        base = {**strong, **{n: DIGITAL for n in digital}}
        analog = [n for n in reversed(self.ranking) if n not in digital]  # least sensitive first

        def downgrade(prefix: list[str], spec: str, start: dict[str, str]):
            return lambda k: {**start, **{n: spec for n in prefix[:k]}}

        if not self.evaluate([base], "digital layers")[0]:
            return base  # nothing to save: the verification decides
        k1 = self._bisect(downgrade(analog, "single", base), 0, len(analog), "one pair", want_largest=True)
        base = downgrade(analog, "single", base)(k1)
        rest = analog[k1:]
        k2 = self._bisect(downgrade(rest, "dual", base), 0, len(rest), "two pairs", want_largest=True)
        config = downgrade(rest, "dual", base)(k2)
        return {n: v for n, v in config.items() if v != "single"}

    def same(self, a: dict[str, str], b: dict[str, str]) -> bool:
        """Whether two configs place every layer alike."""
        return self._key(a) == self._key(b)

    def analog_of(self, config: dict[str, str]) -> list[str]:
        """The searched layers ``config`` keeps analog."""
        return [n for n in self.names if config.get(n) != DIGITAL]

    def resorts(self) -> list[dict[str, str]]:
        """The last-resort configs: one layer analog at three pairs, for the :data:`RESORT_CANDIDATES` layers of
        least loss alone (ties: most MACs), evaluated on the search chips and ranked by their lower bound."""
        if self._resorts is None:
            if len(self.names) == 1:
                self._resorts = [{self.names[0]: STRONG}]
                return self._resorts
            cands = sorted(self.names, key=lambda n: (self.loss.get(n, 0.0), -self.macs[n], n))[:RESORT_CANDIDATES]
            configs = [{**{m: DIGITAL for m in self.names if m != c}, c: STRONG} for c in cands]
            self.evaluate(configs, "last resort")
            self._resorts = sorted(configs, key=lambda c: -self.estimate(c).lcb)  # stable: ties keep the order
        return self._resorts

    def last_resort(self) -> dict[str, str]:
        """The best last-resort config (:meth:`resorts`)."""
        return self.resorts()[0]

    def step_back(self, config: dict[str, str], shortfall: float, last_resort: bool = False) -> dict[str, str]:
        """A more conservative config after fresh chips missed by ``shortfall`` (module docstring), ``config``
        not being the last resort. The new config is evaluated on the search chips (the record)."""
        digital = [n for n in self.order if config.get(n) == DIGITAL]
        analog = [n for n in self.order if n not in digital]
        strongest = {**{n: STRONG for n in analog}, **{n: DIGITAL for n in digital}}
        if last_resort or len(analog) <= 1:
            nxt = self.last_resort()
        elif self._key(config) != self._key(strongest):
            nxt = strongest
        else:
            add, saved = [], 0.0
            for n in analog[:-1]:  # one layer stays analog
                if len(add) >= self.grow and saved >= shortfall:
                    break
                add.append(n)
                saved += max(self.loss.get(n, 0.0), 0.0)
            self.grow = 2 * max(self.grow, len(add))
            nxt = {**{n: STRONG for n in analog if n not in add}, **{n: DIGITAL for n in [*digital, *add]}}
        self.evaluate([nxt], "step back")
        return nxt
