"""A Microsoft Olive pass that runs anacompile's compile as a step of an Olive workflow (extra ``olive``).

``AnacompileCompile`` is an ``olive.passes.Pass``: its config is Olive pass config (every option of
:func:`anacompile.compile_model` that fits in JSON: ``device``, ``periphery``, ``periphery_overrides``,
``strategy``, ``calibration``, ``seed``, ``chip``, ``programming``, ``target``, ``digital``,
``layer_strategies``, and for the accuracy-budget placement ``accuracy_budget``, ``at``, ``metric``,
``data``, ``chips``), it takes an ONNX model handler and returns one for the compiled model.

Olive finds passes through its package configuration, so a workflow that uses this pass is run with
:func:`run_workflow` (or ``olive run --config workflow.json --package-config`` a file written by
:func:`write_package_config`), which adds the pass to Olive's own list::

    {"input_model": {"type": "ONNXModel", "model_path": "model.onnx"},
     "passes": {"analog": {"type": "AnacompileCompile", "device": "pcm", "calibration": "digits"}},
     "output_dir": "out"}

See ``examples/olive/digits_mlp_workflow.json``. Imports ``olive`` (and through it torch): never imported by
the rest of anacompile.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from olive.hardware.accelerator import AcceleratorSpec
from olive.model import ONNXModelHandler
from olive.model.utils import resolve_onnx_path
from olive.passes import Pass
from olive.passes.pass_config import BasePassConfig, PassConfigParam

__all__ = ["PASS_MODULE", "AnacompileCompile", "package_config", "run_workflow", "write_package_config"]

logger = logging.getLogger(__name__)
PASS_MODULE = "anacompile.olive_pass.AnacompileCompile"


class AnacompileCompile(Pass):
    """Compile the ONNX model for analog in-memory-computing crossbars (``anacompile compile``)."""

    @classmethod
    def _default_config(cls, accelerator_spec: AcceleratorSpec) -> dict[str, PassConfigParam]:
        def param(type_, default, description: str) -> PassConfigParam:
            return PassConfigParam(type_=type_, default_value=default, description=description)

        return {
            "device": param(str, "pcm", "Device preset (anacompile devices) or device file."),
            "periphery": param(str, "calibrated", "Periphery preset (calibrated, standard, ideal) or YAML/JSON file."),
            "periphery_overrides": param(dict, None, 'Periphery keys to override, e.g. {"adc_bits": 6}.'),
            "strategy": param(str, "single", "Programming strategy: single, dual, dual:F=2.5 or a strategy file."),
            "calibration": param(str, None, "Calibration data for static input ranges: digits or an .npz."),
            "seed": param(int, 0, "Experiment seed."),
            "chip": param(int, 0, "Chip whose programmed state is stored in the model."),
            "programming": param(str, "gaussian", "Chip programming method (gaussian, verify)."),
            "target": param(str, "simulation", "simulation (for evaluate) or deploy (for a device runtime)."),
            "digital": param(list, None, "Layers kept digital (names or patterns)."),
            "layer_strategies": param(dict, None, "Per-layer programming strategies {layer: spec}."),
            "accuracy_budget": param(float, None, "With it, the accuracy-budget placement chooses digital layers."),
            "at": param(str, "1d", "Time since programming the budget holds at."),
            "metric": param(str, None, "Placement metric: a built-in name (accuracy...) or FILE.py:FUNCTION."),
            "data": param(str, None, "Data of the placement metric: digits or an .npz."),
            "chips": param(int, 3, "Chips per placement evaluation."),
        }

    def _run_for_config(
        self, model: ONNXModelHandler, config: type[BasePassConfig], output_model_path: str
    ) -> ONNXModelHandler:
        from anacompile.placement.api import compile_model  # the compiler, or the placement with a budget

        if not isinstance(model, ONNXModelHandler):
            raise ValueError("AnacompileCompile needs an ONNX model (ONNXModelHandler).")
        options: dict[str, Any] = config.model_dump()
        options = {k: v for k, v in options.items() if k in self._default_config(self.accelerator_spec)}
        if options.get("accuracy_budget") is None:
            for key in ("accuracy_budget", "at", "metric", "data", "chips"):
                options.pop(key, None)
        options = {k: v for k, v in options.items() if v is not None}
        output = Path(resolve_onnx_path(output_model_path, Path(model.model_path).name))
        output.parent.mkdir(parents=True, exist_ok=True)
        report = compile_model(model.model_path, output, force=True, **options)
        logger.info("anacompile: %d analog layers on %d tiles", report.totals["analog_layers"], report.totals["tiles"])
        return ONNXModelHandler(model_path=str(output.parent), onnx_file_name=output.name)


def package_config() -> dict[str, Any]:
    """Olive's own package configuration with :class:`AnacompileCompile` added."""
    from olive.package_config import OlivePackageConfig

    config = json.loads(Path(OlivePackageConfig.get_default_config_path()).read_text(encoding="utf-8"))
    config["passes"]["AnacompileCompile"] = {"module_path": PASS_MODULE}
    return config


def write_package_config(path: str | os.PathLike[str]) -> Path:
    """Write :func:`package_config` as JSON (for ``olive run --package-config PATH``)."""
    out = Path(path)
    out.write_text(json.dumps(package_config(), indent=1), encoding="utf-8")
    return out


def run_workflow(workflow: str | os.PathLike[str] | dict[str, Any]):
    """Run an Olive workflow (a JSON/YAML file or a dict) whose passes may include ``AnacompileCompile``.

    Relative paths in a workflow file are taken relative to its folder (Olive resolves them against the
    working directory), so the example runs from anywhere.
    """
    from olive.workflows import run

    if isinstance(workflow, dict):
        return run(workflow, package_config=package_config())
    path = Path(workflow).resolve()
    cwd = os.getcwd()
    os.chdir(path.parent)
    try:
        return run(str(path), package_config=package_config())
    finally:
        os.chdir(cwd)
