"""MakeDeployFormPass: turn a compiled (simulation-form) model into the form a device runtime loads.

The simulation form, the default, carries what the analog session needs to program *other* chips and to
re-map or study the layers: every layer's programming plan ``L.g_target``, its digital column scales
``L.col_scale`` and its input ranges ``L.in_range``, none of which a node of the graph reads. onnxruntime
warns about each ("Removing initializer ... It is not used by any node"), and about ``t_inference``,
which is both a graph input and an initializer ("appears in graph inputs and will not be treated as
constant value/weight").

The deployment form (``anacompile compile --target deploy``) keeps only what the graph computes with:

* every initializer that no node (of the graph, its subgraphs) reads is removed;
* ``t_inference`` becomes a plain graph input (scalar float32, seconds since programming), no longer an
  initializer, which is what onnxruntime recommends for a value that is fed: the runtime feeds the time
  since the chip was programmed; feed 0.0 for the programmed state (the documented default, and the
  value the simulation form stores). The input's ``doc_string`` says so;
* the analog ops stay model-local ONNX functions, so the file still passes ``onnx.checker`` (full check)
  and runs in a stock onnxruntime, computing the same outputs as the simulation form for the stored chip;
* metadata ``anacompile.target`` = ``deploy``: the analog session refuses the form (it needs the plans).
"""

from __future__ import annotations

import logging

import onnx_ir as ir

from anacompile import contract

__all__ = ["DEPLOY", "META_TARGET", "SIMULATION", "T_INFERENCE_DOC", "TARGETS", "MakeDeployFormPass"]

logger = logging.getLogger(__name__)

META_TARGET = "anacompile.target"
"""Metadata key naming the form of a compiled model: ``simulation`` (absent: simulation) or ``deploy``."""
SIMULATION = "simulation"
DEPLOY = "deploy"
TARGETS = (SIMULATION, DEPLOY)
T_INFERENCE_DOC = (
    "Seconds since the chip was programmed (scalar float32). Feed 0.0 for the programmed state "
    "(the default the simulation form stores); drift and 1/f read noise follow the time fed."
)


class MakeDeployFormPass(ir.passes.InPlacePass):
    """Remove the initializers no node reads and make ``t_inference`` a plain graph input.

    Idempotent: a deployment-form model is left unchanged (``modified=False``).
    """

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        modified = False
        t_inf = graph.initializers.get(contract.T_INFERENCE)
        if t_inf is not None and t_inf.is_graph_input():
            del graph.initializers[contract.T_INFERENCE]  # the value stays, as a plain input
            t_inf.const_value = None
            t_inf.doc_string = T_INFERENCE_DOC
            modified = True
        for g in (graph, *graph.subgraphs()):
            unused = [
                name
                for name, value in g.initializers.items()
                if not value.uses() and not value.is_graph_input() and not value.is_graph_output()
            ]
            for name in unused:
                del g.initializers[name]
            if unused:
                logger.debug("deploy form: removed %d unused initializers (%s, ...)", len(unused), unused[0])
                modified = True
        if model.metadata_props.get(META_TARGET) != DEPLOY:
            model.metadata_props[META_TARGET] = DEPLOY
            modified = True
        return ir.passes.PassResult(model, modified=modified)
