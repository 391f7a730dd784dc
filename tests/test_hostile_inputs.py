"""Hostile inputs at every boundary: one-line errors naming what is wrong, no internal errors, nothing written.

The defect classes of issue 13 one reproducer each, then property-based tests (hypothesis, small budgets)
through the CLI's ``main``; ``bench/fuzz.py`` runs the same families at scale.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from anacompile.cli import main
from anacompile.compiler import compile_model
from anacompile.crossbar.functions import random_ops_load
from anacompile.errors import AnacompileError, ConfigError, DataError, ModelLoadError, UnsupportedModelError
from anacompile.evaluate.data import load_npz
from anacompile.evaluate.times import parse_time
from anacompile.model_io import load_proto
from anacompile.model_validation import checker_problem

HYPOTHESIS = settings(
    max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None
)


def _cli(*argv) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main([str(a) for a in argv])
    return rc, err.getvalue()


def _assert_clean(rc: int, err: str, *words: str) -> None:
    assert rc in (1, 2), err
    assert "internal error" not in err and "Traceback" not in err, err
    if rc == 1:
        lines = [ln for ln in err.strip().splitlines() if not ln.startswith("note:")]
        assert len(lines) == 1 and lines[0].startswith("error:"), err
    for w in words:
        assert w in err, (w, err)


def _save(proto, path):
    path.write_bytes(proto.SerializeToString())
    return path


@pytest.fixture
def mlp(mlp_hwa):
    return onnx.load(str(mlp_hwa))


def _compile_refused(tmp_path, proto, *words, extra=()):
    src = _save(proto, tmp_path / "m.onnx")
    rc, err = _cli("compile", src, "-o", tmp_path / "out.onnx", *extra)
    _assert_clean(rc, err, *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # nothing written, no temporary left


def test_dims_not_matching_data_are_refused_before_allocation(tmp_path, mlp):
    w = mlp.graph.initializer[0]
    w.dims[:] = [2**40, 2**40]
    _compile_refused(tmp_path, mlp, w.name, "2^40")
    w.dims[:] = [3, 5]
    _compile_refused(tmp_path, mlp, w.name, "bytes")


def test_invalid_utf8_names_and_bytes_keys(tmp_path, mlp):
    mlp.graph.node[0].name = "\u00ff"
    data = mlp.SerializeToString().replace("\u00ff".encode(), b"\xff\xfe", 1)
    (tmp_path / "m.onnx").write_bytes(data)
    rc, err = _cli("compile", tmp_path / "m.onnx", "-o", tmp_path / "o.onnx")
    _assert_clean(rc, err, "UTF-8")


def test_nan_weight_is_refused_naming_the_tensor(tmp_path, mlp):
    t = next(t for t in mlp.graph.initializer if len(t.dims) == 2)
    a = numpy_helper.to_array(t).copy()
    a[0, 0] = np.nan
    t.CopyFrom(numpy_helper.from_array(a, t.name))
    _compile_refused(tmp_path, mlp, t.name, "NaN")


def test_checker_failure_is_refused_unless_allow_invalid(tmp_path, mlp):
    mlp.graph.node[0].op_type = "NoSuchOp"
    assert checker_problem(mlp) is not None
    _compile_refused(tmp_path, mlp, "onnx.checker", "--allow-invalid")


def test_analog_domain_in_the_source_is_refused(tmp_path, mlp):
    f = helper.make_function(
        "ai.anacompile",
        "AnalogMatMul",
        ["X"],
        ["Y"],
        [helper.make_node("Identity", ["X"], ["Y"])],
        [helper.make_opsetid("", 17)],
    )
    mlp.functions.append(f)
    mlp.opset_import.add(domain="ai.anacompile", version=1)
    _compile_refused(tmp_path, mlp, "ai.anacompile::AnalogMatMul")
    del mlp.functions[:]
    mlp.graph.node[0].domain = "ai.anacompile"
    _compile_refused(tmp_path, mlp, "already in domain ai.anacompile")


def test_constant_without_value_and_conv_group_zero(tmp_path, mlp):
    mlp.graph.node.insert(0, helper.make_node("Constant", [], ["c"], name="empty_const"))
    _compile_refused(tmp_path, mlp, "empty_const", "exactly one", extra=["--allow-invalid"])
    cnn = onnx.load(str(Path(__file__).parent.parent / "models" / "digits_cnn_fp.onnx"))
    conv = next(n for n in cnn.graph.node if n.op_type == "Conv")
    group = next((a for a in conv.attribute if a.name == "group"), None)
    if group is None:
        conv.attribute.append(helper.make_attribute("group", 0))
    else:
        group.i = 0
    _compile_refused(tmp_path, cnn, "group=0", extra=["--allow-invalid"])


def _external(t, location, **extra):
    t.ClearField("raw_data")
    t.ClearField("float_data")
    t.data_location = TensorProto.EXTERNAL
    t.external_data.add(key="location", value=location)
    for k, v in extra.items():
        t.external_data.add(key=k, value=str(v))


@pytest.mark.parametrize("where", ["initializer", "constant", "tensors_attr", "sparse", "function", "subgraph"])
@pytest.mark.parametrize("location", ["../outside.bin", "ABS", "link.bin", "w\x00.bin", "w.bin@past_eof"])
def test_external_data_rule_everywhere(tmp_path, mlp, where, location):
    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "outside.bin").write_bytes(b"\x00" * 64)
    (folder / "w.bin").write_bytes(b"\x00" * 8)
    os.symlink("../outside.bin", folder / "link.bin")
    loc = {"ABS": str(tmp_path / "outside.bin")}.get(location, location.split("@")[0])
    extra = {"offset": 4096} if location.endswith("past_eof") else {}
    t = numpy_helper.from_array(np.ones(2, np.float32), "ext")
    _external(t, loc, **extra)
    g = mlp.graph
    if where == "initializer":
        g.initializer.append(t)
    elif where == "constant":
        g.node.insert(0, helper.make_node("Constant", [], ["c"], value=t))
    elif where == "tensors_attr":
        g.node[0].attribute.append(helper.make_attribute("fuzz", [t]))
    elif where == "sparse":
        g.sparse_initializer.append(helper.make_sparse_tensor(t, numpy_helper.from_array(np.array([0, 1]), "i"), [4]))
    elif where == "function":
        mlp.functions.append(
            helper.make_function(
                "x.local",
                "F",
                ["X"],
                ["Y"],
                [helper.make_node("Constant", [], ["Y"], value=t)],
                [helper.make_opsetid("", 17)],
            )
        )
    else:
        sub = helper.make_graph(
            [helper.make_node("Identity", ["ext"], ["o"])],
            "b",
            [],
            [helper.make_tensor_value_info("o", TensorProto.FLOAT, [2])],
            [t],
        )
        g.node.append(helper.make_node("If", ["c0"], ["if_o"], then_branch=sub, else_branch=sub))
    src = _save(mlp, folder / "m.onnx")
    with pytest.raises(ModelLoadError, match="ext"):
        load_proto(src)
    rc, err = _cli("compile", src, "-o", folder / "o.onnx", "--allow-invalid")
    _assert_clean(rc, err, "ext")


def test_cli_value_bounds(tmp_path, compiled_mlp, mlp_hwa):
    for argv, word in [
        (["compile", mlp_hwa, "-o", tmp_path / "o.onnx", "--chip", "-1"], "--chip"),
        (["compile", mlp_hwa, "-o", tmp_path / "o.onnx", "--seed", "-3"], "--seed"),
        (["evaluate", compiled_mlp, "--chips", str(2**70)], "--chips"),
        (["evaluate", compiled_mlp, "--chips", "1", "--times", "1e300d"], "1e300d"),
        (["mvm-error", compiled_mlp, "--samples", "0"], "--samples"),
    ]:
        rc, err = _cli(*argv)
        _assert_clean(rc, err, word)
    with pytest.raises(ConfigError):
        parse_time(float("inf"))


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_data_files(tmp_path, compiled_mlp):
    x = np.random.default_rng(0).random((5, 64)).astype(np.float32)
    cases = {
        "zero": {"input": x[:0], "labels": np.arange(0)},
        "nan_labels": {"input": x, "labels": np.full(5, np.nan)},
        "str_labels": {"input": x, "labels": np.array(list("abcde"))},
        "short": {"input": x, "labels": np.arange(3)},
    }
    for name, arrays in cases.items():
        rc, err = _cli(
            "evaluate",
            compiled_mlp,
            "--chips",
            "1",
            "--times",
            "1s",
            "--data",
            _npz(tmp_path / f"{name}.npz", **arrays),
        )
        _assert_clean(rc, err, f"{name}.npz")
    # a header claiming 10^14 rows: refused from the header, before any allocation
    import zipfile

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (10**14, 64)})
    with zipfile.ZipFile(tmp_path / "huge.npz", "w") as z:
        z.writestr("input.npy", buf.getvalue() + x.tobytes())
    with pytest.raises(DataError, match="declares shape"):
        load_npz(tmp_path / "huge.npz")


def test_corrupt_compiled_model(tmp_path, compiled_mlp):
    proto = onnx.load(str(compiled_mlp))
    meta = next(p for p in proto.metadata_props if p.key == "anacompile.report")
    meta.value = meta.value[:100]
    rc, err = _cli("inspect", _save(proto, tmp_path / "a.onnx"))
    _assert_clean(rc, err, "report")
    proto = onnx.load(str(compiled_mlp))
    keep = [t for t in proto.graph.initializer if not t.name.endswith(".g_target")]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(keep)
    rc, err = _cli("evaluate", _save(proto, tmp_path / "b.onnx"), "--chips", "1", "--times", "1s")
    _assert_clean(rc, err, "g_target")


def test_compiled_model_onnxruntime_refuses_is_one_line(tmp_path, compiled_mlp):
    """Fuzz case #2711: a bias cut by one value; every onnxruntime session the runtime builds says so in one line."""
    proto = onnx.load(str(compiled_mlp))
    bias = next(t for t in proto.graph.initializer if t.name.endswith("bias"))
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias)[:-1], bias.name))
    bad = _save(proto, tmp_path / "bad.onnx")
    for argv in (("mvm-error", bad, "--times", "1s"), ("evaluate", bad, "--chips", "1", "--times", "1s")):
        rc, err = _cli(*argv)
        _assert_clean(rc, err, "onnxruntime cannot load", "recompile")


def test_every_supported_opset_emits_a_model_onnxruntime_loads(tmp_path, mlp):
    """Emitted op versions follow the model's opset: from 13 to the newest the installed onnx knows, the
    compiled model passes the full checker and loads (and runs) in onnxruntime; where onnxruntime has no
    random kernels (opset >= 22 with 1.32) the in-file noise is the counter-based generator."""
    x = np.random.default_rng(0).random((4, 64)).astype(np.float32)
    for opset in range(13, onnx.defs.onnx_opset_version() + 1):
        m = onnx.ModelProto()
        m.CopyFrom(mlp)
        next(o for o in m.opset_import if o.domain in ("", "ai.onnx")).version = opset
        src, out = _save(m, tmp_path / f"m{opset}.onnx"), tmp_path / f"o{opset}.onnx"
        compile_model(src, out)
        assert checker_problem(out) is None, opset
        y = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
        assert y.shape == (4, 10) and np.isfinite(y).all(), opset
    assert random_ops_load(17)


def test_counter_based_noise_is_standard_normal():
    """The in-graph generator used where onnxruntime lacks RandomNormalLike: mean 0, variance 1, no lag-1
    correlation, within 4 standard errors over 2^18 draws; a twin scaled by 1.05 fails the variance test."""
    from anacompile.crossbar.functions import _Body, normal_like

    b = _Body()
    b.op("Identity", normal_like(b, "X", 22, ["X"]))
    b.nodes[-1].output[0] = "Y"
    fn = helper.make_function("t.local", "N", ["X"], ["Y"], b.nodes, [helper.make_opsetid("", 22)], attributes=["seed"])
    node = helper.make_node("N", ["x"], ["y"], domain="t.local", seed=3.0)
    g = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [512, 512])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [512, 512])],
    )
    m = helper.make_model(
        g, opset_imports=[helper.make_opsetid("", 22), helper.make_opsetid("t.local", 1)], functions=[fn]
    )
    m.ir_version = 10
    z = (
        ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        .run(None, {"x": np.ones((512, 512), np.float32)})[0]
        .ravel()
        .astype(np.float64)
    )
    n = z.size
    for sample, ok in ((z, True), (1.05 * z, False)):
        assert bool(abs(sample.var() - 1) < 4 * np.sqrt(2 / n)) is ok
    assert abs(z.mean()) < 4 / np.sqrt(n)
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 4 / np.sqrt(n)


# ------------------------------------------------------------------------------------ property-based
@HYPOTHESIS
@given(st.lists(st.tuples(st.integers(0, 39_000), st.integers(0, 255)), min_size=1, max_size=6))
def test_byte_mutations_never_crash_the_compiler(tmp_path_factory, mlp_hwa, edits):
    d = tmp_path_factory.mktemp("bytes")
    data = bytearray(mlp_hwa.read_bytes())
    for i, v in edits:
        data[i % len(data)] = v
    (d / "m.onnx").write_bytes(bytes(data))
    rc, err = _cli("compile", d / "m.onnx", "-o", d / "o.onnx")
    if rc == 0:
        assert checker_problem(d / "o.onnx") is None
    else:
        _assert_clean(rc, err)
        assert sorted(p.name for p in d.iterdir()) == ["m.onnx"]


_VALUES = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["none", "static", "column", "1e400", ".nan", "&a [*a]"]),
)


@HYPOTHESIS
@given(
    st.sampled_from(
        [
            "adc_bits",
            "dac_bits",
            "adc_bound",
            "dac_bound",
            "out_noise",
            "read_noise",
            "ir_drop",
            "tile_rows",
            "input_range",
            "drift_compensation",
            "bm_max_halvings",
            "nope",
        ]
    ),
    _VALUES,
)
def test_set_values_give_clean_errors(tmp_path_factory, mlp_hwa, key, value):
    d = tmp_path_factory.mktemp("set")
    rc, err = _cli("compile", mlp_hwa, "-o", d / "o.onnx", "--set", f"{key}={value}")
    if rc != 0:
        _assert_clean(rc, err)
        assert not list(d.iterdir())


@HYPOTHESIS
@given(
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=5)),
        lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.text(max_size=6), c, max_size=3)),
        max_leaves=12,
    ),
    st.sampled_from(["device", "periphery"]),
)
def test_config_files_give_clean_errors(tmp_path_factory, mlp_hwa, doc, kind):
    import yaml

    d = tmp_path_factory.mktemp("cfg")
    (d / "c.yaml").write_text(yaml.safe_dump({"base": "pcm" if kind == "device" else "standard", "x": doc}))
    rc, err = _cli("compile", mlp_hwa, "-o", d / "o.onnx", f"--{kind}", d / "c.yaml")
    _assert_clean(rc, err)


def test_alias_bomb_and_deep_nesting_are_refused_quickly(tmp_path, mlp_hwa):
    import time

    bomb = (
        ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
        + [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
        + ["g_max_us: *a8"]
    )
    (tmp_path / "bomb.yaml").write_text("\n".join(bomb))
    (tmp_path / "deep.yaml").write_text("a: " + "[" * 20000 + "]" * 20000)
    for f in ("bomb.yaml", "deep.yaml"):
        t0 = time.perf_counter()
        rc, err = _cli("compile", mlp_hwa, "-o", tmp_path / "o.onnx", "--device", tmp_path / f)
        assert time.perf_counter() - t0 < 10
        _assert_clean(rc, err, f)
    with pytest.raises(AnacompileError):
        compile_model(mlp_hwa, tmp_path / "o.onnx", periphery=tmp_path / "bomb.yaml")
    assert issubclass(UnsupportedModelError, AnacompileError)
