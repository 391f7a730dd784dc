"""The placement search's statistics and control flow, on a synthetic evaluator (no ONNX: fast).

The synthetic model has L layers; layer i costs ``loss[i] / pairs**2`` of the metric when analog with
``pairs`` differential pairs (0 when digital). A chip scales every layer's cost by its own factor (common
random numbers: all configs see the same chips), and the metric is an accuracy over 64 items, so it moves
in steps of 1/64.
"""

from __future__ import annotations

import numpy as np
import pytest

from anacompile.placement._evaluator import DIGITAL, LayerInfo
from anacompile.placement._stats import estimate, granularity, t_quantile
from anacompile.placement.search import STRONG, _Search

PAIRS = {"single": 1, "dual": 2, STRONG: 3}


class FakeEvaluator:
    def __init__(self, loss, macs, chips=3, seed=0, spread=0.3, items=64):
        self.loss = np.asarray(loss, float)
        self.layers = [LayerInfo(f"l{i}", "Conv", 100 * m, m) for i, m in enumerate(macs)]
        self.baseline, self.metric_name, self.evaluations, self.unexercised = 1.0, "acc", 0, []
        self.chip_factor = 1 + spread * np.random.default_rng(seed).standard_normal(chips)
        self.items = items

    @property
    def names(self):
        return [la.name for la in self.layers]

    def scores(self, configs, times):
        out = np.zeros((len(configs), len(self.chip_factor), len(times)))
        for i, c in enumerate(configs):
            cost = sum(
                0.0 if c.get(n) == DIGITAL else self.loss[j] / PAIRS[c.get(n, "single")] ** 2
                for j, n in enumerate(self.names)
            )
            out[i] = np.round((1 - cost * self.chip_factor)[:, None] * self.items) / self.items
        self.evaluations += len(configs)
        return out


def test_granularity_and_standard_error():
    assert granularity([1.0, 0.984375, 0.96875, 1.0]) == pytest.approx(1 / 64)
    assert granularity([0.5, 0.5]) == 0.0 and granularity([0.3]) == 0.0
    assert granularity([0.1, 0.1 + 1e-13, 0.2]) == pytest.approx(0.1)  # float noise is not a step
    e = estimate([1.0, 1.0, 1.0], step=1 / 64, k=1.0)  # all chips equal: the rounding term remains
    assert e.std == 0 and e.se == pytest.approx((1 / 64) / np.sqrt(12 * 3)) and e.lcb < 1.0
    x = [0.9, 0.95, 1.0, 0.92]
    e = estimate(x, step=0.0, k=2.0)
    assert e.se == pytest.approx(np.std(x, ddof=1) / 2) and e.lcb == pytest.approx(np.mean(x) - 2 * e.se)
    assert not e.meets(e.lcb + 1e-9) and e.meets(e.lcb)


@pytest.mark.parametrize("confidence", [0.9, 0.95])
def test_verification_bound_has_its_confidence(confidence):
    """Over many 8-chip verifications of a config whose true mean sits on the target, the lower bound
    clears it in 1 - confidence of them (binomial SE tolerance); a bound 5 % narrower clears it too often."""
    rng = np.random.default_rng(7)
    reps, n = 20000, 8
    x = 0.98 + 0.03 * rng.standard_normal((reps, n))
    k = t_quantile(confidence, n - 1)
    se = x.std(axis=1, ddof=1) / np.sqrt(n)
    passed = np.mean(x.mean(axis=1) - k * se >= 0.98)
    tol = 4 * np.sqrt(confidence * (1 - confidence) / reps)
    assert abs(passed - (1 - confidence)) < tol
    twin = np.mean(x.mean(axis=1) - 0.95 * k * se >= 0.98)
    assert abs(twin - (1 - confidence)) > tol


def test_search_keeps_the_fragile_layers_digital_in_few_configs():
    loss = [0.001] * 12
    loss[3], loss[8] = 0.6, 0.5  # two layers alone ruin it
    macs = [10 + i for i in range(12)]
    ev = FakeEvaluator(loss, macs, spread=0.1)
    s = _Search(ev, 86400.0, 0.02)
    config = s.run()
    assert sorted(n for n, v in config.items() if v == DIGITAL) == ["l3", "l8"]
    assert s.ranking[:2] == ["l3", "l8"] and s.order[:2] == ["l3", "l8"]
    assert s.step == pytest.approx(1 / 64)
    e = s.estimate(config)
    assert e.mean - e.se >= s.target  # the one-SE rule
    assert ev.evaluations <= 1 + 12 + 1 + 4 + 2 * 4 + 2  # all single, sensitivity, three pairs, bisections


def test_step_back_grows_and_ends_at_the_last_resort():
    loss = [0.05, 0.04, 0.03, 0.02, 0.01, 0.001, 0.001, 0.0005]
    ev = FakeEvaluator(loss, [10] * 8, spread=0.0)
    s = _Search(ev, 86400.0, 0.02)
    config = s.run()
    seen = [config]
    while not s.same(config, s.last_resort()):
        digital = {n for n, v in config.items() if v == DIGITAL}
        nxt = s.step_back(config, shortfall=0.0)
        new_digital = {n for n, v in nxt.items() if v == DIGITAL}
        assert digital <= new_digital or len(s.analog_of(nxt)) == 1  # never less conservative, or the last resort
        assert new_digital != digital or all(nxt[n] == STRONG for n in ev.names if n not in new_digital)
        assert any(v != DIGITAL for v in nxt.values()) or len(nxt) < len(ev.names)  # one layer stays analog
        config = nxt
        seen.append(config)
        assert len(seen) < 10
    resort = s.last_resort()
    (kept,) = [n for n in ev.names if resort.get(n) != DIGITAL]  # one layer analog, at three pairs
    assert resort[kept] == STRONG and kept in ("l5", "l6", "l7")  # one of the least sensitive
    assert len(s.resorts()) == 3 and all(len(s.analog_of(r)) == 1 for r in s.resorts())
    added = [
        len({n for n, v in b.items() if v == DIGITAL}) - len({n for n, v in a.items() if v == DIGITAL})
        for a, b in zip(seen, seen[1:], strict=False)
    ]
    growth = [a for a in added if a > 0][:-1]  # the last step may be cut by the last resort
    assert all(b >= 2 * a for a, b in zip(growth, growth[1:], strict=False))


def test_step_back_adds_as_many_layers_as_the_shortfall_needs():
    loss = [0.05, 0.04, 0.03, 0.02, 0.01, 0.005, 0.001, 0.001]
    ev = FakeEvaluator(loss, [10] * 8, spread=0.0)
    s = _Search(ev, 86400.0, 0.2)
    s.run()
    s.loss = dict(zip(ev.names, loss, strict=True))
    s.order = list(ev.names)
    strongest = {n: STRONG for n in ev.names}
    nxt = s.step_back(strongest, shortfall=0.085)  # l0 + l1 save 0.09 >= 0.085
    assert sorted(n for n, v in nxt.items() if v == DIGITAL) == ["l0", "l1"]
