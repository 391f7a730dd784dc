"""Fuzz the command line with hostile inputs and classify what happens (issue 13).

    python bench/fuzz.py --cases 10000 --workers 2 --seed 0 [--families bytes,structural,config,cli]

Every case is generated from ``(seed, index)`` alone (reproduce one with ``--only INDEX``), written into a
fresh folder ``case/model/`` (with a file ``case/outside/secret.bin`` beside that folder, which no
accepted model may read), and run in-process through :func:`anacompile.cli.main` in a worker process.
The parent guards every case with a hang timeout (60 s): a worker that does not answer is killed and the
case counted as a hang; a worker that dies is a crash. Outcomes:

* ``ok`` -- exit 0, and every ``.onnx`` it wrote passes ``onnx.checker`` (full check) and loads in
  onnxruntime, every ``.json`` parses;
* ``clean_error`` -- exit 1 with one ``error:`` line that is not an internal error; ``usage_error`` -- exit 2;
* defects: ``internal_error`` (the CLI's ``internal error (...)`` line, or an exception escaping ``main``),
  ``multiline_error``, ``hang``, ``crash``, ``partial_output`` (a failed command left a file or temporary
  folder), ``modified_input`` (an input file changed), ``bad_output`` (an output fails the full checker,
  onnxruntime's loader or JSON parsing), ``outside_path_accepted`` (a case whose model reads a file outside
  its folder succeeded).

Families: ``bytes`` (byte mutations of the committed models and of a compiled model), ``structural``
(mutations through the onnx API: names, dims, data, external data everywhere a tensor can live, domains,
attributes, opsets, NaN/Inf), ``config`` (hostile device/periphery/strategy files and ``--set`` values),
``cli`` (bad ``evaluate``/``inspect``/``mvm-error`` inputs: data files, option values, corrupted compiled
models).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import io
import json
import multiprocessing as mp
import os
import random
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = sorted((ROOT / "models").glob("*.onnx"))
DEFECTS = (
    "internal_error",
    "multiline_error",
    "hang",
    "crash",
    "partial_output",
    "modified_input",
    "bad_output",
    "outside_path_accepted",
)
FAMILIES = ("bytes", "structural", "config", "cli")
HANG_S = 60.0


# ---------------------------------------------------------------------------------------------- cases
class Case:
    """Files to write into ``case/`` (paths relative to it), the argv (``{d}`` = the case folder)."""

    def __init__(
        self,
        family: str,
        kind: str,
        argv: list[str],
        files: dict[str, bytes],
        outside: bool = False,
        links: dict[str, str] | None = None,
    ) -> None:
        self.family, self.kind, self.argv, self.files = family, kind, argv, files
        self.outside = outside  # the model reads (or tries to read) a file outside its folder
        self.links = links or {}  # symlinks: path -> target (relative to the case folder)


def _compiled_model() -> bytes:
    """A compiled digits MLP (made once per worker)."""
    cache = _WORKER_CACHE.get("compiled")
    if cache is None:
        from anacompile.compiler import compile_model

        d = Path(tempfile.mkdtemp(prefix="fuzz-compiled-"))
        compile_model(ROOT / "models" / "digits_mlp_hwa.onnx", d / "c.onnx", calibration="digits")
        cache = _WORKER_CACHE["compiled"] = (d / "c.onnx").read_bytes()
        shutil.rmtree(d)
    return cache


_WORKER_CACHE: dict = {}


def make_case(seed: int, index: int, families: tuple[str, ...] = FAMILIES) -> Case:
    """The case ``index`` of run ``seed`` (deterministic)."""
    rng = random.Random(f"{seed}:{index}")
    family = families[index % len(families)]
    return {"bytes": _bytes_case, "structural": _structural_case, "config": _config_case, "cli": _cli_case}[family](rng)


def _mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 3, 5, 8, 20])):
        op = rng.randrange(7)
        if not b:
            b = bytearray(rng.randbytes(8))
        i = rng.randrange(len(b))
        if op == 0:
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            b[i] = rng.choice([0, 0xFF, 0x7F, 0x80, rng.randrange(256)])
        elif op == 2:
            del b[i : i + rng.randint(1, 64)]
        elif op == 3:
            b[i:i] = rng.randbytes(rng.randint(1, 16))
        elif op == 4:
            j = rng.randrange(len(b))
            b[i:i] = b[j : j + rng.randint(1, 128)]
        elif op == 5:
            del b[rng.randrange(len(b)) :]
        else:  # a varint length field made huge
            b[i : i + 1] = bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x0F])
    return bytes(b)


def _bytes_case(rng: random.Random) -> Case:
    if rng.random() < 0.2:
        data = _mutate_bytes(rng, _compiled_model())
        cmd = rng.choice(
            [
                ["inspect"],
                ["inspect", "--json"],
                ["evaluate", "--chips", "1", "--times", "1s", "--json", "{d}/model/r.json"],
            ]
        )
        return Case("bytes", f"compiled/{cmd[0]}", [*cmd[:1], "{d}/model/m.onnx", *cmd[1:]], {"model/m.onnx": data})
    src = rng.choice(MODELS)
    data = _mutate_bytes(rng, src.read_bytes())
    return Case(
        "bytes",
        f"source/{src.stem}",
        ["compile", "{d}/model/m.onnx", "-o", "{d}/model/out.onnx"],
        {"model/m.onnx": data},
    )


def _structural_case(rng: random.Random) -> Case:
    import onnx

    src = rng.choice(MODELS)
    proto = onnx.load(str(src))
    files: dict[str, bytes] = {}
    links: dict[str, str] = {}
    kind = rng.choice(_STRUCT_MUTATIONS)
    outside = kind(rng, proto, files, links) or False
    extra = rng.choice([[], [], [], ["--allow-invalid"], ["--calibration", "digits"]])
    if "lstm" in src.stem or "transformer" in src.stem:
        extra = [e for e in extra if e != "--calibration" and e != "digits"]
    try:
        data = proto.SerializeToString()
    except Exception:  # a mutation the serialiser refuses (e.g. a string field made invalid): write raw bytes
        data = _mutate_bytes(rng, src.read_bytes())
    files["model/m.onnx"] = data
    return Case(
        "structural",
        kind.__name__.lstrip("_"),
        ["compile", "{d}/model/m.onnx", "-o", "{d}/model/out.onnx", *extra],
        files,
        outside,
        links,
    )


def _pick_init(rng, proto):
    inits = list(proto.graph.initializer)
    return rng.choice(inits) if inits else None


def _s_dims(rng, proto, files, links):
    t = _pick_init(rng, proto)
    if t is None:
        return
    choice = rng.randrange(5)
    if choice == 0:
        t.dims[:] = [2**40, 2**40]
    elif choice == 1 and t.dims:
        t.dims[rng.randrange(len(t.dims))] += rng.choice([-1, 1, 7])
    elif choice == 2:
        t.dims.append(rng.choice([0, 1, 3]))
    elif choice == 3:
        t.dims[:] = [-1 * rng.randint(1, 5), 4]
    else:
        t.dims[:] = [0] * max(1, len(t.dims))
        t.ClearField("raw_data")
        t.ClearField("float_data")


def _s_data(rng, proto, files, links):
    import numpy as np
    import onnx.numpy_helper as nh

    t = _pick_init(rng, proto)
    if t is None:
        return
    choice = rng.randrange(5)
    if choice == 0 and t.raw_data:
        t.raw_data = t.raw_data[: rng.randrange(len(t.raw_data))]
    elif choice <= 2 and t.data_type == 1:
        a = nh.to_array(t).copy()
        if a.size:
            a.flat[rng.randrange(a.size)] = rng.choice([np.nan, np.inf, -np.inf])
        t.CopyFrom(nh.from_array(a, t.name))
    elif choice == 3:
        t.data_type = rng.choice([0, 2, 3, 6, 7, 8, 9, 10, 11, 16, 17, 30, 99])
    else:
        t.ClearField("raw_data")
        t.float_data.extend([1.0] * rng.randint(0, 3))


def _s_zero_size(rng, proto, files, links):
    import numpy as np
    import onnx.numpy_helper as nh

    t = next((i for i in proto.graph.initializer if len(i.dims) == 2), None)
    if t is not None:
        shape = [t.dims[0], 0] if rng.random() < 0.5 else [0, t.dims[1]]
        t.CopyFrom(nh.from_array(np.zeros(shape, np.float32), t.name))


def _s_names(rng, proto, files, links):
    choice = rng.randrange(6)
    bad = rng.choice(["\udcff", "a\x00b", "", " ", "x" * 5000, "../../evil", "é名", "1", "."])
    if choice == 0 and proto.graph.node:
        rng.choice(proto.graph.node).name = bad if "\udcff" not in bad else "ok"
    elif choice == 1:
        t = _pick_init(rng, proto)
        if t is not None and "\udcff" not in bad:
            old = t.name
            t.name = bad
            for n in proto.graph.node:
                for k, i in enumerate(n.input):
                    if i == old:
                        n.input[k] = bad
    elif choice == 2:
        proto.metadata_props.add(key=bad if "\udcff" not in bad else "k", value="v")
    elif choice == 3:
        proto.graph.node[rng.randrange(len(proto.graph.node))].name = "\u00ff" * rng.randint(1, 3)
        files["raw_patch"] = b"utf8"  # marker: patch the serialized bytes below (see _serialize_invalid_utf8)
    elif choice == 4:
        n = rng.choice(proto.graph.node)
        if n.output:
            n.output[0] = n.input[0] if n.input else "dup"
    else:
        proto.graph.input[0].name = proto.graph.output[0].name


def _s_ops(rng, proto, files, links):
    from onnx import helper

    choice = rng.randrange(8)
    nodes = proto.graph.node
    n = rng.choice(nodes)
    if choice == 0:
        n.domain = "ai.anacompile"
        proto.opset_import.add(domain="ai.anacompile", version=1)
    elif choice == 1:
        f = helper.make_function(
            "ai.anacompile",
            "AnalogMatMul",
            ["X"],
            ["Y"],
            [helper.make_node("Identity", ["X"], ["Y"])],
            [helper.make_opsetid("", 17)],
        )
        proto.functions.append(f)
        proto.opset_import.add(domain="ai.anacompile", version=1)
    elif choice == 2:
        c = helper.make_node("Constant", [], [f"c{rng.randrange(9)}"])
        nodes.insert(0, c)
    elif choice == 3:
        for node in nodes:
            if node.op_type == "Conv":
                for a in node.attribute:
                    if a.name == "group":
                        a.i = rng.choice([0, -1, 3, 2**40])
                        break
                else:
                    node.attribute.append(helper.make_attribute("group", rng.choice([0, -1, 3])))
    elif choice == 4:
        n.op_type = rng.choice(["Nope", "MatMul", "Gemm", "LSTM", "Conv", "Loop", ""])
    elif choice == 5:
        del nodes[rng.randrange(len(nodes))]
    elif choice == 6 and len(nodes) > 1:  # a cycle
        a, b = rng.sample(range(len(nodes)), 2)
        if nodes[b].output and nodes[a].input:
            nodes[a].input[0] = nodes[b].output[0]
    else:
        for a in n.attribute:
            if a.type == 2:
                a.i = rng.choice([0, -1, 2**62, 7])
            elif a.type == 1:
                a.f = rng.choice([0.0, -1.0, float("nan"), float("inf"), 1e30])
            elif a.type == 7:
                a.ints[:] = [rng.choice([0, -1, 2**40, 3]) for _ in a.ints]


def _s_opset(rng, proto, files, links):
    import onnx

    for o in proto.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = rng.choice(
                [
                    1,
                    7,
                    11,
                    12,
                    13,
                    17,
                    18,
                    21,
                    22,
                    23,
                    24,
                    25,
                    onnx.defs.onnx_opset_version(),
                    onnx.defs.onnx_opset_version() + 1,
                    2**31,
                ]
            )
    if rng.random() < 0.3:
        proto.ir_version = rng.choice([0, 3, 7, 8, 9, 10, 11, 12, 13, 99])


def _s_symbolic(rng, proto, files, links):
    for vi in list(proto.graph.input) + list(proto.graph.output):
        for d in vi.type.tensor_type.shape.dim:
            if rng.random() < 0.7:
                d.dim_param = rng.choice(["N", "T", "batch", "seq"])
    if rng.random() < 0.3:
        proto.graph.ClearField("value_info")


def _external_tensor(rng, proto, t, files, links):
    """Move tensor ``t``'s data to an external file with a hostile (or fine) location."""
    import onnx

    raw = t.raw_data or onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(t)).raw_data
    t.ClearField("raw_data")
    t.ClearField("float_data")
    t.ClearField("int64_data")
    t.ClearField("int32_data")
    t.data_location = onnx.TensorProto.EXTERNAL
    choice = rng.randrange(9)
    outside = False
    offset, length = 0, len(raw)
    if choice == 0:
        loc = "w.bin"
        files["model/w.bin"] = raw
    elif choice == 1:
        loc, outside = "../outside/secret.bin", True
    elif choice == 2:
        loc, outside = "{d}/outside/secret.bin", True  # absolute
    elif choice == 3:
        loc, outside = "link.bin", True
        links["model/link.bin"] = "../outside/secret.bin"
    elif choice == 4:
        loc = "w\x00.bin"
        files["model/w.bin"] = raw
    elif choice == 5:
        loc, offset = "w.bin", len(raw) + rng.choice([0, 1, 4096, 2**40])
        files["model/w.bin"] = raw
    elif choice == 6:
        loc, length = "w.bin", len(raw) + rng.choice([1, 4, 2**33])
        files["model/w.bin"] = raw
    elif choice == 7:
        loc = "missing.bin"
    else:
        loc, outside = "sub/../../outside/secret.bin", True
    del t.external_data[:]
    t.external_data.add(key="location", value=loc)
    if offset:
        t.external_data.add(key="offset", value=str(offset))
    if length != len(raw) or rng.random() < 0.3:
        t.external_data.add(key="length", value=str(length))
    return outside


def _s_external(rng, proto, files, links):
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    where = rng.randrange(7)
    g = proto.graph
    if where == 0:  # an initializer
        t = _pick_init(rng, proto)
        return t is not None and _external_tensor(rng, proto, t, files, links)
    if where == 1:  # a Constant node's value
        t = numpy_helper.from_array(np.ones((2,), np.float32), "cval")
        out = _external_tensor(rng, proto, t, files, links)
        g.node.insert(0, helper.make_node("Constant", [], ["c_ext"], value=t))
        g.output.append(helper.make_tensor_value_info("c_ext", onnx.TensorProto.FLOAT, [2]))
        return out
    if where == 2:  # a TENSORS attribute of a node (custom domain, no schema)
        t = numpy_helper.from_array(np.ones((2,), np.float32), "tval")
        out = _external_tensor(rng, proto, t, files, links)
        node = g.node[0]
        node.attribute.append(helper.make_attribute("anacompile_fuzz", [t]))
        return out
    if where == 3:  # a sparse initializer
        vals = numpy_helper.from_array(np.ones((2,), np.float32), "sp")
        idx = numpy_helper.from_array(np.array([0, 3], np.int64), "sp_idx")
        out = _external_tensor(rng, proto, vals if rng.random() < 0.7 else idx, files, links)
        g.sparse_initializer.append(helper.make_sparse_tensor(vals, idx, [8]))
        return out
    if where == 4:  # a function body's Constant
        t = numpy_helper.from_array(np.ones((1,), np.float32), "fval")
        out = _external_tensor(rng, proto, t, files, links)
        body = [helper.make_node("Constant", [], ["c"], value=t), helper.make_node("Add", ["X", "c"], ["Y"])]
        proto.functions.append(
            helper.make_function("fuzz.local", "AddC", ["X"], ["Y"], body, [helper.make_opsetid("", 17)])
        )
        proto.opset_import.add(domain="fuzz.local", version=1)
        out_name = g.output[0].name
        last = next(n for n in g.node if out_name in n.output)
        last.output[list(last.output).index(out_name)] = "pre_fuzz"
        g.node.append(helper.make_node("AddC", ["pre_fuzz"], [out_name], domain="fuzz.local"))
        return out
    if where == 5:  # a subgraph (If branch) initializer
        t = numpy_helper.from_array(np.ones((1,), np.float32), "sval")
        out = _external_tensor(rng, proto, t, files, links)
        then_g = helper.make_graph(
            [helper.make_node("Identity", ["sval"], ["o1"])],
            "then",
            [],
            [helper.make_tensor_value_info("o1", onnx.TensorProto.FLOAT, [1])],
            [t],
        )
        else_g = helper.make_graph(
            [helper.make_node("Constant", [], ["o2"], value_floats=[0.0])],
            "else",
            [],
            [helper.make_tensor_value_info("o2", onnx.TensorProto.FLOAT, [1])],
        )
        cond = numpy_helper.from_array(np.array(True), "fuzz_cond")
        g.initializer.append(cond)
        g.node.append(helper.make_node("If", ["fuzz_cond"], ["if_out"], then_branch=then_g, else_branch=else_g))
        g.output.append(helper.make_tensor_value_info("if_out", onnx.TensorProto.FLOAT, [1]))
        return out
    # every initializer external, into one file
    out = False
    for t in g.initializer:
        out = _external_tensor(rng, proto, t, files, links) or out
    return out


_STRUCT_MUTATIONS = [_s_dims, _s_data, _s_zero_size, _s_names, _s_ops, _s_opset, _s_symbolic, _s_external, _s_external]


# ---- config family
def _yaml_value(rng: random.Random, depth: int = 0):
    c = rng.randrange(12)
    if c == 0 and depth < 3:
        return {rng.choice(["a", "base", "g_max_us", "drift", "1", ""]): _yaml_value(rng, depth + 1)}
    if c == 1 and depth < 3:
        return [_yaml_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return rng.choice(
        [
            0,
            -1,
            1,
            2**70,
            -(2**70),
            1e308,
            -1e-320,
            float("nan"),
            float("inf"),
            -float("inf"),
            0.5,
            "x",
            "",
            "nan",
            "inf",
            "1e400",
            "0x10",
            True,
            False,
            None,
            "ideal",
            "standard",
            "pcm",
        ]
    )


def _hostile_yaml(rng: random.Random, keys: list[str]) -> bytes:
    import yaml

    c = rng.randrange(10)
    if c == 0:  # deep nesting
        depth = rng.choice([100, 1000, 10000, 50000])
        return ("a: " + "[" * depth + "]" * depth + "\n").encode()
    if c == 1:  # alias bomb
        lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
        for i in range(1, rng.randint(4, 10)):
            prev = f"*a{i - 1}"
            lines.append(f"a{i}: &a{i} [{','.join([prev] * 9)}]")
        lines.append(f"{rng.choice(keys)}: *a{len(lines) - 1}")
        return "\n".join(lines).encode()
    if c == 2:  # binary garbage / invalid UTF-8
        return rng.randbytes(rng.randint(1, 200))
    if c == 3:  # syntax error
        return rng.choice([b"a: [1, 2\nb: {", b"key: value: other\n  - x", b"\t- a\n\tb: c", b"a: 'unterminated\n"])
    if c == 4:  # big file
        return b"# " + b"x" * rng.choice([10**6, 2 * 10**6]) + b"\n"
    if c == 5:
        return rng.choice([b"", b"null", b"[]", b"1", b"- a\n- b", b"!!python/object:os.system ['echo hi']"])
    if c == 6:  # schema versions
        return yaml.safe_dump({"schema_version": _yaml_value(rng), "base": rng.choice(["pcm", "standard"])}).encode()
    doc = {k: _yaml_value(rng) for k in rng.sample(keys, rng.randint(1, min(4, len(keys))))}
    if rng.random() < 0.5:
        doc["base"] = rng.choice(["pcm", "standard", "ideal", "nope", 3])
    try:
        return (json.dumps(doc) if rng.random() < 0.3 else yaml.safe_dump(doc)).encode()
    except ValueError:
        return yaml.safe_dump(doc).encode()


_DEVICE_KEYS = [
    "g_max_us",
    "g_min_us",
    "drift",
    "programming",
    "read_noise",
    "t0_s",
    "nu",
    "base",
    "name",
    "prog_noise",
    "unknown_key",
]
_PERIPHERY_KEYS = [
    "tile_rows",
    "tile_cols",
    "dac_bits",
    "adc_bits",
    "adc_bound",
    "dac_bound",
    "out_noise",
    "read_noise",
    "ir_drop",
    "ir_drop_g_ratio",
    "input_range",
    "drift_compensation",
    "bound_management",
    "bm_max_halvings",
    "input_range_percentile",
    "base",
]


def _set_value(rng: random.Random) -> str:
    key = rng.choice([*_PERIPHERY_KEYS, "", "nope", "=", "adc_bits=", "ADC_BITS"])
    value = rng.choice(
        [
            "nan",
            "inf",
            "-inf",
            "1e400",
            "-1",
            "0",
            "1",
            "2**70",
            "99999999999999999999",
            "x",
            "",
            "6",
            "1.5",
            "[1,2]",
            "{a: 1}",
            "&a [*a]",
            "true",
            "none",
            "static",
            "column",
        ]
    )
    return rng.choice([f"{key}={value}", key, f"{key}=={value}", f"{key}={value}={value}"])


def _config_case(rng: random.Random) -> Case:
    src = ROOT / "models" / "digits_mlp_hwa.onnx"
    files = {"model/m.onnx": src.read_bytes()}
    argv = ["compile", "{d}/model/m.onnx", "-o", "{d}/model/out.onnx"]
    what = rng.randrange(5)
    ext = rng.choice([".yaml", ".yml", ".json"])
    if what == 0:
        files[f"model/dev{ext}"] = _hostile_yaml(rng, _DEVICE_KEYS)
        argv += ["--device", f"{{d}}/model/dev{ext}"]
        kind = "device"
    elif what == 1:
        files[f"model/per{ext}"] = _hostile_yaml(rng, _PERIPHERY_KEYS)
        argv += ["--periphery", f"{{d}}/model/per{ext}"]
        kind = "periphery"
    elif what == 2:
        for _ in range(rng.randint(1, 3)):
            argv += ["--set", _set_value(rng)]
        kind = "set"
    elif what == 3:
        files["model/s.json"] = _hostile_yaml(rng, ["kind", "pairs", "significance", "F", "segments", "base"])
        argv += ["--strategy", "{d}/model/s.json"]
        kind = "strategy"
    else:
        files["model/r.json"] = rng.choice(
            [
                b"{",
                b"[]",
                b'{"fc1_Gemm": "x"}',
                b'{"fc1_Gemm": -1}',
                b'{"fc1_Gemm": NaN}',
                b'{"fc1_Gemm": [1, 2, 3]}',
                b'{"nope": 1}',
                b'{"fc1_Gemm": 1e400}',
                b'{"fc1_Gemm": Infinity}',
                b"\xff\xfe",
                ("[" * 100000).encode(),
                b'{"fc1_Gemm": {"a": 1}}',
            ]
        )
        argv += ["--input-ranges", "{d}/model/r.json"]
        kind = "input-ranges"
    if rng.random() < 0.3:
        argv += ["--set", _set_value(rng)]
    return Case("config", kind, argv, files)


# ---- cli family
def _npz(arrays: dict) -> bytes:
    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _hostile_npz(rng: random.Random) -> bytes:
    import zipfile

    import numpy as np

    c = rng.randrange(9)
    x = np.random.default_rng(rng.randrange(2**32)).random((rng.choice([1, 5, 20]), 64)).astype(np.float32)
    y = np.arange(x.shape[0]) % 10
    if c == 0:
        return _npz({"input": x[:0], "labels": y[:0]})
    if c == 1:  # a header claiming 10^14 rows
        buf = io.BytesIO()
        header = {"descr": "<f4", "fortran_order": False, "shape": (10**14, 64)}
        npy = io.BytesIO()
        np.lib.format.write_array_header_1_0(npy, header)
        npy.write(x.tobytes())
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("input.npy", npy.getvalue())
            z.writestr("labels.npy", _npy(y))
        return buf.getvalue()
    if c == 2:
        yl = y.astype(np.float64)
        yl[0] = rng.choice([np.nan, np.inf, 0.5, -1, 1e30])
        return _npz({"input": x, "labels": yl})
    if c == 3:
        return _npz({"input": x, "labels": np.array(["a"] * x.shape[0])})
    if c == 4:
        xn = x.copy()
        xn[0, 0] = rng.choice([np.nan, np.inf])
        return _npz({"input": xn, "labels": y})
    if c == 5:
        return _npz({"input": x[:, : rng.choice([0, 1, 63, 65])], "labels": y})
    if c == 6:
        return _npz({"input": x, "labels": y[: rng.randrange(len(y))]})
    if c == 7:
        return _npz({"input": np.array(["s"] * 64 * x.shape[0]).reshape(x.shape), "labels": y})
    return _mutate_bytes(rng, _npz({"input": x, "labels": y}))


def _npy(a) -> bytes:
    import numpy as np

    b = io.BytesIO()
    np.save(b, a)
    return b.getvalue()


def _corrupt_compiled(rng: random.Random) -> bytes:
    import onnx

    proto = onnx.load_from_string(_compiled_model())
    c = rng.randrange(6)
    meta = {p.key: p for p in proto.metadata_props}
    rep = meta.get("anacompile.report")
    if c == 0 and rep is not None:
        rep.value = rep.value[: rng.randrange(len(rep.value))]
    elif c == 1 and rep is not None:
        d = json.loads(rep.value)
        victim = rng.choice(["device", "periphery", "strategy", "seed", "layers", "chip", "programming"])
        if rng.random() < 0.5:
            d.pop(victim, None)
        else:
            d[victim] = rng.choice([None, "x", -1, [], {}, 2**70, 1e308])
        rep.value = json.dumps(d)
    elif c == 2:
        del proto.metadata_props[:]
    elif c == 3:
        names = [t.name for t in proto.graph.initializer if "." in t.name]
        victim = rng.choice(names)
        keep = [t for t in proto.graph.initializer if t.name != victim]
        del proto.graph.initializer[:]
        proto.graph.initializer.extend(keep)
    elif c == 4:
        t = rng.choice([t for t in proto.graph.initializer if "." in t.name])
        import numpy as np
        import onnx.numpy_helper as nh

        a = nh.to_array(t)
        if rng.random() < 0.5:
            a = np.full_like(a, rng.choice([np.nan, np.inf, -1.0, 0.0])) if a.dtype.kind == "f" else a
        else:
            a = a.reshape(-1)[: max(0, a.size - 1)]
        t.CopyFrom(nh.from_array(a, t.name))
    else:
        del proto.functions[:]
    return proto.SerializeToString()


def _cli_case(rng: random.Random) -> Case:
    files = {"model/c.onnx": _compiled_model()}
    model = "{d}/model/c.onnx"
    c = rng.randrange(7)
    base = ["evaluate", model, "--chips", "1", "--times", "1s"]
    if c == 0:
        files["model/d.npz"] = _hostile_npz(rng)
        argv = [*base, "--data", "{d}/model/d.npz"]
        if rng.random() < 0.3:
            argv = ["mvm-error", model, "--data", "{d}/model/d.npz", "--chips", "1"]
        kind = "data"
    elif c == 1:
        opt = rng.choice(["--chip", "--seed"])
        value = rng.choice(["-1", "-5", str(2**70), "0", "3", "1e3", "x"])
        argv = (
            ["compile", "{d}/model/s.onnx", "-o", "{d}/model/o.onnx", opt, value]
            if opt == "--chip" or rng.random() < 0.5
            else [*base, "--seed", value]
        )
        files["model/s.onnx"] = (ROOT / "models" / "digits_mlp_hwa.onnx").read_bytes()
        kind = f"value{opt}"
    elif c == 2:
        value = rng.choice(["0", "-1", str(2**70), "1e9", "x", "100000000"])
        argv = ["evaluate", model, "--times", "1s", "--chips", value]
        if rng.random() < 0.3:
            argv = ["evaluate", model, "--chips", "1", "--workers", value]
        kind = "value--chips"
    elif c == 3:
        value = rng.choice(
            ["1e300d", "1e400", "-1s", "nan", "inf", "1e20y", "0", "1x", ",", "1s,,1h", "1e15", "1" * 400]
        )
        argv = ["evaluate", model, "--chips", "1", "--times", value]
        kind = "value--times"
    elif c == 4:
        value = rng.choice(["0", "-1", str(2**70), "1"])
        argv = ["mvm-error", model, "--chips", "1", "--samples", value]
        kind = "value--samples"
    elif c == 5:
        files["model/c.onnx"] = _corrupt_compiled(rng)
        argv = rng.choice([["inspect", model], [*base], ["mvm-error", model, "--chips", "1"]])
        kind = f"corrupt/{argv[0]}"
    else:
        files["model/rows.csv"] = rng.choice(
            [
                b"",
                b"chip,time_s,compensation,accuracy\n0,1.0,global,0.9",
                b"garbage\n\xff\xfe",
                b"chip,time_s,compensation,accuracy\n-1,x,y,z\n",
                b"chip,time_s,compensation,accuracy\n0,1.0,global,0.9\n",
            ]
        )
        argv = [*base, "--resume", "{d}/model/rows.csv"]
        kind = "resume"
    return Case("cli", kind, argv, files)


# ---------------------------------------------------------------------------------------------- running
def _tree_hashes(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _check_output(path: Path, source: Path | None = None) -> str | None:
    """Why an output file is bad, or None. With ``source`` (an ``--allow-invalid`` compile), only the checks
    that the source itself passes apply (the output is checked as strictly as its source allows)."""
    if path.suffix == ".onnx":
        from anacompile.model_validation import checker_problem, ort_problem

        full = source is None or checker_problem(source) is None
        if source is None or full or checker_problem(source, full_check=False) is None:
            problem = checker_problem(path, full_check=full)
            if problem is not None:
                return f"checker (full_check={full}): {problem[:200]}"
        if source is None or ort_problem(source) is None:
            problem = ort_problem(path)
            if problem is not None:
                return f"onnxruntime: {problem[:200]}"
    elif path.suffix == ".json":
        try:
            json.loads(path.read_text())
        except Exception as err:
            return f"json: {err}"
    return None


def _absolute_locations(path: Path, d: str) -> None:
    import onnx

    proto = onnx.load_from_string(path.read_bytes())

    def walk(msg):
        for desc, value in msg.ListFields():
            if desc.message_type is None:
                continue
            for item in value if desc.is_repeated else [value]:
                if desc.message_type.name == "StringStringEntryProto" and "{d}" in item.value:
                    item.value = item.value.replace("{d}", d)
                else:
                    walk(item)

    walk(proto)
    path.write_bytes(proto.SerializeToString())


def run_case(case: Case, workdir: Path) -> dict:
    """Run one case in this process; return its outcome record."""
    from anacompile import cli

    d = workdir
    shutil.rmtree(d, ignore_errors=True)
    (d / "model").mkdir(parents=True)
    (d / "outside").mkdir()
    (d / "outside" / "secret.bin").write_bytes(os.urandom(4096))
    for rel, data in case.files.items():
        if rel == "raw_patch":
            continue
        p = d / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    for rel, target in case.links.items():
        os.symlink(target, d / rel)
    if "raw_patch" in case.files:  # make a node name invalid UTF-8 (the API refuses to set one)
        m = d / "model" / "m.onnx"
        m.write_bytes(m.read_bytes().replace("\u00ff".encode(), b"\xff\xfe", 1))
    argv = [a.replace("{d}", str(d)) for a in case.argv]
    m = d / "model" / "m.onnx"
    if case.family == "structural" and m.is_file() and b"{d}" in m.read_bytes():  # absolute external locations
        _absolute_locations(m, str(d))
    before = _tree_hashes(d)
    out, err = io.StringIO(), io.StringIO()
    escaped = None
    t0 = time.perf_counter()
    cli._STATE["verbose"] = False
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli.main(argv)
        except BaseException as exc:  # noqa: BLE001 - anything escaping main is a defect
            rc, escaped = -1, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-800:]}"
    wall = time.perf_counter() - t0
    after = _tree_hashes(d)
    stderr = err.getvalue()
    record = {
        "family": case.family,
        "kind": case.kind,
        "rc": rc,
        "wall_s": round(wall, 3),
        "stderr": stderr.strip()[-600:],
        "argv": argv,
    }
    modified = [k for k in before if after.get(k) != before[k]]
    new = [k for k in after if k not in before]
    leftovers = [str(p.relative_to(d)) for p in d.rglob(".*.tmp")]
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    if escaped is not None:
        outcome, record["detail"] = "internal_error", escaped
    elif modified:
        outcome, record["detail"] = "modified_input", modified
    elif rc == 0:
        source = d / "model" / "m.onnx" if "--allow-invalid" in argv else None
        bad = [(k, why) for k in new if (why := _check_output(d / k, source))]
        if case.outside:
            outcome = "outside_path_accepted"
        elif bad:
            outcome, record["detail"] = "bad_output", bad
        else:
            outcome = "ok"
    elif rc == 2:
        outcome = "usage_error"
    elif "internal error" in stderr or "Traceback" in stderr:
        outcome = "internal_error"
    elif new or leftovers:
        outcome, record["detail"] = "partial_output", new + leftovers
    elif len(errors) != 1 or len(stderr.strip().splitlines()) > len(
        [ln for ln in stderr.splitlines() if ln.startswith(("note:", "WARNING", "error:"))]
    ):
        outcome = "multiline_error" if errors else "internal_error"
    else:
        outcome = "clean_error"
    if rc == 0 and outcome == "ok" and leftovers:
        outcome, record["detail"] = "partial_output", leftovers
    record["outcome"] = outcome
    return record


def _worker(conn, seed: int, families: tuple[str, ...], base: str) -> None:
    import logging
    import warnings

    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)
    workdir = Path(base) / f"w{os.getpid()}"
    import anacompile.cli  # noqa: F401 (import once, before the first case)

    while True:
        index = conn.recv()
        if index is None:
            break
        try:
            case = make_case(seed, index, families)
            rec = run_case(case, workdir)
        except BaseException as exc:  # noqa: BLE001 - a harness failure is reported, not fatal
            rec = {
                "family": "?",
                "kind": "?",
                "outcome": "harness_error",
                "detail": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-1500:]}",
            }
        rec["index"] = index
        conn.send(rec)
    shutil.rmtree(workdir, ignore_errors=True)


class _Slot:
    def __init__(self, ctx, seed, families, base):
        self.args = (seed, families, base)
        self.ctx = ctx
        self.start()

    def start(self):
        self.parent, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_worker, args=(child, *self.args), daemon=False)
        self.proc.start()
        self.index, self.t0 = None, 0.0

    def send(self, index):
        self.index, self.t0 = index, time.monotonic()
        self.parent.send(index)


def run(
    n_cases: int,
    seed: int,
    workers: int,
    families: tuple[str, ...],
    hang_s: float = HANG_S,
    only: list[int] | None = None,
    progress: bool = True,
    partial_out: Path | None = None,
) -> list[dict]:
    """Run the cases over ``workers`` worker processes; return one record per case."""
    ctx = mp.get_context("spawn")
    base = tempfile.mkdtemp(prefix="anacompile-fuzz-")
    todo = collections.deque(only if only is not None else range(n_cases))
    total = len(todo)
    slots = [_Slot(ctx, seed, families, base) for _ in range(min(workers, total) or 1)]
    records: list[dict] = []
    t_start = time.monotonic()
    try:
        for s in slots:
            if todo:
                s.send(todo.popleft())
        while any(s.index is not None for s in slots):
            busy = [s for s in slots if s.index is not None]
            ready = mp.connection.wait([s.parent for s in busy] + [s.proc.sentinel for s in busy], timeout=1.0)
            for s in busy:
                rec = None
                if s.parent in ready:
                    try:
                        rec = s.parent.recv()
                    except EOFError:
                        rec = None
                if rec is None and (s.proc.sentinel in ready or not s.proc.is_alive()):
                    rec = {
                        "index": s.index,
                        "outcome": "crash",
                        "detail": f"exit code {s.proc.exitcode}",
                        **_meta(seed, s.index, families),
                    }
                    s.proc.join(1)
                    s.start()
                elif rec is None and time.monotonic() - s.t0 > hang_s:
                    rec = {
                        "index": s.index,
                        "outcome": "hang",
                        "detail": f"> {hang_s:.0f} s",
                        **_meta(seed, s.index, families),
                    }
                    s.proc.kill()
                    s.proc.join(5)
                    s.start()
                if rec is None:
                    continue
                records.append(rec)
                s.index = None
                if todo:
                    s.send(todo.popleft())
                if partial_out is not None and len(records) % 500 == 0:  # survives a kill of a long run
                    partial_out.write_text(json.dumps({"seed": seed, "cases_done": len(records), "records": records}))
                if progress and len(records) % 200 == 0:
                    counts = collections.Counter(r["outcome"] for r in records)
                    print(
                        f"[{len(records)}/{total} {time.monotonic() - t_start:.0f}s] {dict(counts)}",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        for s in slots:
            with contextlib.suppress(Exception):
                s.parent.send(None)
            s.proc.join(5)
            if s.proc.is_alive():
                s.proc.kill()
        shutil.rmtree(base, ignore_errors=True)
    return sorted(records, key=lambda r: r["index"])


def _meta(seed, index, families):
    try:
        case = make_case(seed, index, families)
        return {"family": case.family, "kind": case.kind, "argv": case.argv}
    except Exception:
        return {"family": "?", "kind": "?"}


def main(argv: list[str] | None = None) -> int:
    """Command line: run, print counts per outcome (and per family), write the records as JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--families", default=",".join(FAMILIES))
    p.add_argument("--hang-s", type=float, default=HANG_S)
    p.add_argument("--only", type=int, nargs="*", help="run only these case indices")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "fuzz.json")
    args = p.parse_args(argv)
    families = tuple(f.strip() for f in args.families.split(",") if f.strip())
    t0 = time.monotonic()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    records = run(
        args.cases,
        args.seed,
        args.workers,
        families,
        args.hang_s,
        args.only,
        partial_out=args.out.with_suffix(".partial.json"),
    )
    wall = time.monotonic() - t0
    counts = collections.Counter(r["outcome"] for r in records)
    per_family = collections.defaultdict(collections.Counter)
    for r in records:
        per_family[r["family"]][r["outcome"]] += 1
    print(f"{len(records)} cases, seed {args.seed}, {args.workers} workers, {wall:.0f} s")
    for outcome, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"  {outcome:24s} {n:6d}{'   <- defect' if outcome in DEFECTS else ''}")
    for fam, c in sorted(per_family.items()):
        print(f"  {fam:12s} " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {"seed": args.seed, "cases": len(records), "wall_s": wall, "counts": dict(counts), "records": records},
            indent=1,
        )
    )
    defects = [r for r in records if r["outcome"] in DEFECTS or r["outcome"] == "harness_error"]
    for r in defects[:40]:
        print(
            f"  #{r['index']} {r['outcome']} {r['family']}/{r['kind']}: "
            f"{(r.get('detail') or r.get('stderr') or '')!s:.300}"
        )
    return 1 if defects else 0


if __name__ == "__main__":
    sys.exit(main())
