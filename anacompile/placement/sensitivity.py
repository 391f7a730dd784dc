"""``sensitivity``: which layers cost the metric when analog, measured on one compiled plan.

For every analog-capable layer L of the plan and every time t, over chips 0..n-1 of the experiment seed:

* **only L analog**: L on the chip, every other layer digital (FP32 weights, no periphery): what L alone
  costs;
* **all but L analog**: every layer on the chip but L: what keeping only L digital gives back;

beside the FP32 baseline and the all-analog metric, mean +- std over chips. Layers are ranked by the
loss alone analog, baseline - mean(only L), at the last time (ties: by the gain all-but-L minus
all-analog). All configs run on the same programmed chips of one switchable session
(:mod:`anacompile.placement._evaluator`), so nothing is recompiled per layer and the ranking is a
deterministic function of the seed.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from anacompile.errors import ConfigError
from anacompile.evaluate.metrics import Metric
from anacompile.evaluate.times import format_time, parse_times
from anacompile.model_io import ModelInput, atomic_output, model_label
from anacompile.placement._evaluator import DIGITAL
from anacompile.placement._prepare import plan_evaluator

__all__ = ["LayerSensitivity", "SensitivityResult", "sensitivity"]

logger = logging.getLogger(__name__)


@dataclass
class LayerSensitivity:
    """One layer's metric alone analog and with all but it analog: per time, mean and std over chips."""

    name: str
    op: str
    parameters: int
    macs: int
    only_mean: list[float]
    only_std: list[float]
    all_but_mean: list[float]
    all_but_std: list[float]
    loss_alone: float = 0.0  # baseline - only_mean at the ranking time
    gain_digital: float = 0.0  # all_but_mean - all_analog_mean at the ranking time


@dataclass
class SensitivityResult:
    """Per-layer sensitivity, ranked (most costly first)."""

    model: str
    metric: str
    baseline: float
    times_s: list[float]
    chips: int
    seed: int
    all_analog_mean: list[float]
    all_analog_std: list[float]
    layers: list[LayerSensitivity] = field(default_factory=list)  # ranked

    @property
    def ranking(self) -> list[str]:
        """Layer names, most costly first."""
        return [layer.name for layer in self.layers]

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        d = asdict(self)
        d["times"] = [format_time(t) for t in self.times_s]
        d["ranking"] = self.ranking
        return d

    def save_json(self, path: str | os.PathLike[str]) -> None:
        """Write the JSON atomically."""
        with atomic_output(path) as tmp:
            Path(tmp).write_text(json.dumps(self.to_dict(), indent=2))


def sensitivity(
    model: ModelInput,
    *,
    metric: str | Metric | None = None,
    data: str | os.PathLike[str] | None = None,
    times: str | list = "1s,1d",
    chips: int = 3,
    seed: int | None = None,
    compensation: str | None = None,
    layers: list[str] | None = None,
    progress=None,
    providers: str | list[str] | None = None,
    **compile_options: Any,
) -> SensitivityResult:
    """Per-layer sensitivity of a model's metric to analog execution (module docstring).

    Args:
        model: a compiled model, or a source ONNX model (a path, ModelProto or onnx-ir Model; compiled
            all-analog with ``compile_options``: ``device``, ``periphery``, ``calibration``, ``strategy``,
            ``seed``... into a temporary folder). ``periphery_overrides`` (``{"adc_bits": 6}``) hold for a
            compiled model too: its session changes those periphery keys, as ``evaluate``'s does.
        metric: built-in name, ``FILE.py:FUNCTION`` or a callable ``metric(run) -> float``
            (:mod:`anacompile.evaluate.metrics`); ``data`` for built-in metrics.
        times: times since programming; the ranking uses the last.
        chips: chips per config; ``seed``: experiment seed (default: the compile seed).
        compensation: drift compensation override.
        layers: only these layers (default: all analog layers).
        progress: ``progress(done, total)`` over (config, chip, time) runs.
        providers: onnxruntime execution providers of the session (``"cuda"``; :mod:`anacompile.runtime.providers`;
            default the CPU); one that is not available is a one-line ConfigError naming the available ones,
            raised before anything is compiled.
    """
    times_s = parse_times(times)
    if chips < 1:
        raise ConfigError(f"--chips {chips}: need at least one chip.")
    if "seed" in compile_options and seed is None:
        seed = compile_options["seed"]
    with plan_evaluator(model, compile_options, providers, metric, data, chips, seed, compensation, progress) as ev:
        names = ev.names
        chosen = names if layers is None else list(layers)
        unknown = [n for n in chosen if n not in names]
        if unknown:
            raise ConfigError(f"Unknown layer(s) {unknown}; analog layers: {names}.")
        configs = [{}]
        for name in chosen:
            configs.append({n: DIGITAL for n in names if n != name})  # only `name` analog
            configs.append({name: DIGITAL})  # all but `name` analog
        s = ev.scores(configs, times_s)  # (configs, chips, times)
        mean, std = s.mean(axis=1), s.std(axis=1)
        info = {la.name: la for la in ev.layers}
        rows = []
        for i, name in enumerate(chosen):
            only, but = 1 + 2 * i, 2 + 2 * i
            rows.append(
                LayerSensitivity(
                    name=name,
                    op=info[name].op,
                    parameters=info[name].parameters,
                    macs=info[name].macs,
                    only_mean=mean[only].tolist(),
                    only_std=std[only].tolist(),
                    all_but_mean=mean[but].tolist(),
                    all_but_std=std[but].tolist(),
                    loss_alone=float(ev.baseline - mean[only, -1]),
                    gain_digital=float(mean[but, -1] - mean[0, -1]),
                )
            )
        rows.sort(key=lambda r: (-round(r.loss_alone, 12), -round(r.gain_digital, 12), r.name))
        logger.info("sensitivity ranking: %s", [r.name for r in rows[:5]])
        return SensitivityResult(
            model=model_label(model),
            metric=ev.metric_name,
            baseline=ev.baseline,
            times_s=times_s,
            chips=chips,
            seed=ev.session.seed,
            all_analog_mean=mean[0].tolist(),
            all_analog_std=std[0].tolist(),
            layers=rows,
        )
