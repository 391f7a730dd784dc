"""Small source graphs and checks shared by the per-pass test modules (tests/passes/test_<pass>.py).

Every pass test runs the pass on a known graph, checks the expected graph (exact op counts, the plans'
fields), that ``modified`` tells the truth (a run reporting ``False`` leaves the model identical, a run
reporting ``True`` changed it), and that a second run is a no-op (idempotence).
"""

from __future__ import annotations

import hashlib

import numpy as np
import onnx_ir as ir
from onnx import TensorProto, helper, numpy_helper

from anacompile import devices
from anacompile.crossbar.periphery import PERIPHERY_PRESETS
from anacompile.passes._layer import LAYER_KEY, analog_layers

PCM = devices.get("pcm")
STANDARD = PERIPHERY_PRESETS["standard"].replace(input_range="absmax")


def mlp(k: int = 64, hidden: int = 32) -> ir.Model:
    """x -MatMul(W1)-> Relu -Gemm(W2^T, b2)-> y, plus an activation x activation MatMul (stays digital)."""
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((k, hidden)).astype(np.float32)
    w2 = rng.standard_normal((10, hidden)).astype(np.float32)
    b2 = rng.standard_normal(10).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "W2", "b2"], ["y"], transB=1, alpha=0.5, beta=2.0, name="fc2"),
        helper.make_node("Transpose", ["y"], ["yt"]),
        helper.make_node("MatMul", ["y", "yt"], ["gram"], name="gram"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", k])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10]),
            helper.make_tensor_value_info("gram", TensorProto.FLOAT, ["N", "N"]),
        ],
        [numpy_helper.from_array(w1, "W1"), numpy_helper.from_array(w2, "W2"), numpy_helper.from_array(b2, "b2")],
    )
    return ir.serde.deserialize_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def count(model: ir.Model, op_type: str, domain: str = "") -> int:
    """Nodes of ``op_type`` in ``domain`` in the main graph."""
    return sum(1 for n in model.graph if n.op_type == op_type and n.domain == domain)


def op_counts(model: ir.Model) -> dict[tuple[str, str], int]:
    """(domain, op_type) -> count of the main graph."""
    out: dict[tuple[str, str], int] = {}
    for n in model.graph:
        out[(n.domain, n.op_type)] = out.get((n.domain, n.op_type), 0) + 1
    return out


def _plan_digest(plan) -> str:
    h = hashlib.sha256()
    for name in ("n_tiles", "tile_rows", "n_col_tiles", "weight_shape"):
        h.update(repr(getattr(plan, name, None)).encode())
    for name in ("weight", "bias", "in_range", "col_scale", "g_target", "g_prog", "nu", "gdc_ref"):
        value = getattr(plan, name, None)
        if value is None:
            h.update(b"-")
        else:
            arr = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
            h.update(repr((arr.shape, str(arr.dtype))).encode() + arr.tobytes())
    return h.hexdigest()


def fingerprint(model: ir.Model) -> str:
    """Everything a pass can change: the serialized model and the per-node compile plans (node metadata)."""
    h = hashlib.sha256(ir.serde.serialize_model(model).SerializeToString(deterministic=True))
    for node in model.graph:
        for key in sorted(node.meta):
            h.update(f"{node.name}:{key}".encode())
            if key == LAYER_KEY:
                h.update(_plan_digest(node.meta[key]).encode())
            else:
                h.update(repr(node.meta[key]).encode())
    return h.hexdigest()


def run_truthfully(p, model: ir.Model) -> bool:
    """Run pass ``p``; assert ``modified`` matches whether the model changed; return ``modified``."""
    before = fingerprint(model)
    modified = p(model).modified
    changed = fingerprint(model) != before
    assert modified == changed, (
        f"{type(p).__name__}: modified={modified} but the model {'' if changed else 'did not '}change"
    )
    return modified


def assert_idempotent(p, model: ir.Model) -> None:
    """A second run of ``p`` reports modified=False and changes nothing."""
    before = fingerprint(model)
    assert not p(model).modified, f"{type(p).__name__}: a second run reports modified=True"
    assert fingerprint(model) == before, f"{type(p).__name__}: a second run changed the model"


def plans(model: ir.Model) -> dict:
    """Layer name -> plan of every analog layer."""
    return {node.name: plan for node, plan in analog_layers(model)}
