"""Upgrade a model of an old opset (7-12) to the opset the compiler builds on, on load.

The analog function bodies and the recurrent/conv emitters use operator forms of opset 13 and later (Split
with sizes as an input, ReduceSum with axes as an input, LSTM ``layout``). Files exported a few years ago
are often opset 11 or 12; onnx's version converter (``onnx.version_converter.convert_version``) rewrites
them op by op with its adapters. A model the converter cannot upgrade is refused with the op it names.
"""

from __future__ import annotations

import logging
import re

import onnx

from anacompile.errors import UnsupportedModelError

__all__ = ["MIN_OPSET", "TARGET_OPSET", "default_opset", "upgrade_opset"]

logger = logging.getLogger(__name__)

MIN_OPSET = 13
"""The oldest default-domain opset the compiler works on directly."""
TARGET_OPSET = 17
"""Opset an older model is upgraded to (the one the converter's adapters are best tested against)."""
OLDEST_CONVERTIBLE = 7
"""The converter's adapters start at opset 7 (older files are refused)."""


def default_opset(proto: onnx.ModelProto) -> int:
    """The model's default-domain (``ai.onnx``) opset version, 0 if it imports none."""
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def upgrade_opset(proto: onnx.ModelProto, source: str = "model") -> tuple[onnx.ModelProto, str | None]:
    """Return the model at opset >= :data:`MIN_OPSET` and a note for the report (``None`` if unchanged).

    Args:
        proto: the source model (with its tensor data loaded, if it uses external data).
        source: the model's name in messages.

    Raises:
        UnsupportedModelError: the opset is older than 7, or the converter has no adapter for one of its ops
            (the message names the op).
    """
    version = default_opset(proto)
    if not proto.opset_import or version >= MIN_OPSET:
        return proto, None
    if version < OLDEST_CONVERTIBLE:
        raise UnsupportedModelError(
            f"{source}: opset {version} is older than {OLDEST_CONVERTIBLE}, which onnx's version converter cannot "
            f"upgrade; re-export the model at opset {TARGET_OPSET}."
        )
    try:
        upgraded = onnx.version_converter.convert_version(proto, TARGET_OPSET)
        onnx.checker.check_model(upgraded)
    except Exception as err:  # the converter raises RuntimeError/ValidationError/InferenceError with C++ text
        raise UnsupportedModelError(
            f"{source}: opset {version} could not be upgraded to {TARGET_OPSET} by onnx's version converter "
            f"({_what_failed(proto, err)}); re-export the model at opset {MIN_OPSET} or later."
        ) from err
    note = f"opset {version} upgraded to {TARGET_OPSET} on load (onnx.version_converter)"
    logger.info("%s: %s", source, note)
    return upgraded, note


def _what_failed(proto: onnx.ModelProto, err: Exception) -> str:
    """One line naming the op the converter stopped at: an op with no schema, one its message names, or one
    that the target opset no longer has; else the converter's own first words."""
    text = " ".join(str(err).split())
    seen: dict[str, str] = {}
    for node in _nodes(proto.graph):
        if node.domain in ("", "ai.onnx"):
            seen.setdefault(node.op_type, node.name or node.op_type)
    for op, name in seen.items():
        if not onnx.defs.has(op):
            return f"op {op} (node {name!r}) is not an ONNX operator"
    for op, name in seen.items():
        if re.search(rf"\b{re.escape(op)}\b", text):
            return f"op {op} (node {name!r}): {text[:160]}"
    for op, name in seen.items():
        try:
            if onnx.defs.get_schema(op, TARGET_OPSET).deprecated:
                return f"op {op} (node {name!r}) was removed from the ONNX standard"
        except onnx.defs.SchemaError:
            return f"op {op} (node {name!r}) has no opset-{TARGET_OPSET} form"
    return text[:200] or type(err).__name__


def _nodes(graph: onnx.GraphProto):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _nodes(attr.g)
            for g in attr.graphs:
                yield from _nodes(g)
