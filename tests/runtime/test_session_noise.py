"""Per-MVM noise as the analog session feeds it (fed noise tensors, views of the chip's bank)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from anacompile.compiler import compile_model
from anacompile.crossbar.reference import tile_forward
from anacompile.evaluate.datasets import load_digits_split
from anacompile.runtime.session import AnalogSession
from tests._support import stats as st
from tests._support.devices import NOISELESS_DEVICE


@pytest.mark.parametrize(
    "overrides",
    [
        ["read_noise=0", "ir_drop=0", "adc_bits=none", "adc_bound=none"],  # output noise only
        ["ir_drop=0", "adc_bits=none", "adc_bound=none"],  # + read noise
        ["ir_drop=0", "adc_bits=none", "adc_bound=none", "tile_rows=24"],  # tiled layers
        ["ir_drop=0", "bound_management=iterative", "bm_max_halvings=2"],  # per-pass noise
    ],
)
def test_session_noise_matches_the_reference_statistics(tmp_path, mlp_fp, overrides):
    device = tmp_path / "d.yaml"
    device.write_text(NOISELESS_DEVICE)
    out = tmp_path / "m.onnx"
    compile_model(mlp_fp, out, device=device, calibration="digits", periphery_overrides=overrides)
    proto = onnx.load(str(out))
    hidden_name = next(n.output[0] for n in proto.graph.node if n.op_type == "AnalogMatMul")
    s = AnalogSession(out, extra_outputs=[hidden_name])
    x = load_digits_split()[1].x[:16]
    layer = s.layers[0]
    xs = s.layer_inputs({"input": x})[layer.name]
    runs = 300
    w_codes, in_scale, scale = s.layer_state(layer)
    rng = np.random.default_rng(0)
    shape = (s.periphery.bm_passes,) * (s.periphery.bm_passes > 1) + (
        (layer.n_tiles, xs.shape[0], layer.n_out) if layer.spec.tiled else (xs.shape[0], layer.n_out)
    )
    bias = next(onnx.numpy_helper.to_array(t) for t in proto.graph.initializer if t.name == f"{layer.name}.bias")
    ref = np.stack(
        [
            tile_forward(
                xs,
                w_codes,
                in_scale,
                scale,
                bias,
                s.periphery,
                rng.standard_normal(shape).astype(np.float32),
                layer.out_gain,
            )
            for _ in range(runs)
        ]
    )
    hidden = np.stack([s.run({"input": x}, [hidden_name])[0] for _ in range(runs)])
    assert not np.array_equal(hidden[0], hidden[1])  # fresh noise every run
    # difference of two independent means: SE sqrt((var_a + var_b) / runs); 5 SE over ~2000 elements (p ~ 1e-3)
    se = np.sqrt((hidden.var(axis=0) + ref.var(axis=0)) / runs)
    assert (np.abs(hidden.mean(axis=0) - ref.mean(axis=0)) <= 5 * se + 1e-4).all()
    # means: element by element, z = (mean_session - mean_ref) / SE; E[z^2] = 1 when they agree
    means = st.mean_z(hidden, ref)
    st.assert_matches(means, st.expected_mean_z2(runs, runs), detect=None)  # power: the twin below
    # per-MVM noise: std of the session's outputs over runs / the reference's, element by element
    # the session draws all its noise from one bank of standard normals: its sample std is common to all runs
    bank = 1 / np.sqrt(2 * s._bank_size)
    ratio = st.with_common_error(st.std_ratio(hidden, ref, floor=1e-6), bank, "noise bank")
    st.assert_matches(ratio, 1.0)
    # twins: 5 % more (or less) per-MVM noise in the session, and a 5 % gain error, must fail these checks
    centred = hidden - hidden.mean(axis=0)
    for factor in (1.05, 0.95):
        perturbed = st.std_ratio(hidden.mean(axis=0) + factor * centred, ref, floor=1e-6)
        st.assert_rejects(st.with_common_error(perturbed, bank, "noise bank"), 1.0)
    st.assert_rejects(st.mean_z(1.05 * hidden, ref), st.expected_mean_z2(runs, runs))


def test_large_models_reach_onnxruntime_through_external_data(monkeypatch, compiled_mlp):
    """Above the in-memory limit the session writes the model with external data (protobuf's 2 GB limit)."""
    import anacompile.runtime.ort_session as session_module

    x = {"input": load_digits_split()[1].x[:8]}
    small = AnalogSession(compiled_mlp, chip_seed=2).run(x)[0]
    monkeypatch.setattr(session_module, "IN_MEMORY_LIMIT_BYTES", 1000)
    large = AnalogSession(compiled_mlp, chip_seed=2)
    assert hasattr(large._session, "_anacompile_folder")
    np.testing.assert_array_equal(large.run(x)[0], small)
    np.testing.assert_array_equal(large.run_digital(x)[0], AnalogSession(compiled_mlp).run_digital(x)[0])


def test_a_session_without_a_chip_runs_only_digitally(compiled_mlp):
    from anacompile.errors import ConfigError

    s = AnalogSession(compiled_mlp, chip_seed=None)
    x = {"input": load_digits_split()[1].x[:4]}
    assert s.run_digital(x)[0].shape == (4, 10)
    with pytest.raises(ConfigError, match="program"):
        s.run(x)
    with pytest.raises(ConfigError, match="program"):
        s.set_time(1.0)
    s.program(3)
    s.set_time(1.0)
    np.testing.assert_array_equal(s.run(x)[0], AnalogSession(compiled_mlp, chip_seed=3, t_inference=1.0).run(x)[0])
