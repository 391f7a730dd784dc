"""Tests of anacompile/devices/table.py: the RRAM preset against its published formulas, device files.

The published formulas are written out here from the source (aihwkit 1.2.0 ``ReRamWan2022NoiseModel``,
coefficients highest power first as aihwkit lists them), independently of the preset's own constants.
Statistical checks: fixed seed, tolerance of 5 standard errors of a pooled estimator; each published
coefficient perturbed by 5 % must fail the same check.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from anacompile import devices
from anacompile.devices import RRAM_WAN_2022, Curve, Device, TableDevice
from anacompile.errors import DeviceError

G_MAX = 40.0  # µS; aihwkit: the Wan 2022 fits are for g_max = 40 µS
# aihwkit coeff_dic, highest power first (before its [::-1])
WAN = {
    1.0: [-16.815, 45.393, -43.853, 16.030, 0.348],
    86400.0: [-16.458, 47.095, -50.773, 22.086, 0.701],
    172800.0: [-11.934, 37.062, -43.507, 20.274, 0.782],
}
G_POINTS = np.array([8.0, 12.0, 20.0, 30.0, 40.0])  # µS; >= 3.5 sigma above 0, where clamping is negligible
N = 200_000
N_SE = 5.0
BENCH_DEVICE = Path(__file__).resolve().parents[2] / "bench" / "devices" / "nonmonotone_table.yaml"


def published_sigma(coeffs_high_first: list[float], g_us: np.ndarray) -> np.ndarray:
    """σ(g) = Σ c_i (g/g_max)^i, µS (aihwkit ReRamWan2022NoiseModel._apply_poly)."""
    return np.polyval(coeffs_high_first, np.asarray(g_us) / G_MAX)


def pooled_variance_z(samples: np.ndarray, expected_var: np.ndarray) -> float:
    """z of the mean over points of (s²/σ² − 1); its SE is sqrt(2/(N−1)) / sqrt(points) for normal data."""
    ratio = samples.var(axis=1, ddof=1) / expected_var
    se = math.sqrt(2.0 / (samples.shape[1] - 1)) / math.sqrt(samples.shape[0])
    return float(np.mean(ratio - 1.0) / se)


def _programmed(seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    g = np.repeat(G_POINTS[:, None], N, axis=1)
    return RRAM_WAN_2022.program(g, rng) - g


def test_preset_is_a_device_and_listed() -> None:
    assert isinstance(RRAM_WAN_2022, Device)
    assert "rram_wan2022" in devices.available() and devices.get("rram_wan2022") is RRAM_WAN_2022
    assert "10.1038/s41586-022-04992-8" in RRAM_WAN_2022.citation
    assert any("inferred" in v for v in RRAM_WAN_2022.sources.values())


def test_programming_noise_matches_the_published_polynomial() -> None:
    dev = _programmed()
    sigma = published_sigma(WAN[1.0], G_POINTS)
    z_mean = dev.mean(axis=1) / (sigma / math.sqrt(N))
    assert np.all(np.abs(z_mean) < N_SE)
    assert abs(pooled_variance_z(dev, sigma**2)) < N_SE


@pytest.mark.parametrize("i", range(5))
def test_programming_check_fails_for_each_coefficient_perturbed_by_5_percent(i: int) -> None:
    dev = _programmed()
    coeffs = list(WAN[1.0])
    coeffs[i] *= 1.05
    assert abs(pooled_variance_z(dev, published_sigma(coeffs, G_POINTS) ** 2)) > N_SE


def test_programming_noise_is_not_monotone() -> None:
    s = RRAM_WAN_2022.programming_sigma_us(np.linspace(0, G_MAX, 401))
    peak = int(np.argmax(s))
    assert 0 < peak < 400 and s[peak] > 2.0 > s[-1] and s[0] < 0.4


def _relaxed(t: float, seed: int = 2) -> np.ndarray:
    """read − g_prog for devices sitting exactly at G_POINTS (no drift: ν = 0)."""
    rng = np.random.default_rng(seed)
    g = np.repeat(G_POINTS[:, None], N, axis=1)
    return RRAM_WAN_2022.read(g, np.zeros_like(g), t, rng) - g


@pytest.mark.parametrize("t", [86400.0, 172800.0])
def test_relaxation_adds_the_published_variance_at_1_and_2_days(t: float) -> None:
    """Var(g(t) − g_prog) = σ_t² − σ_1s² so that Var(g(t) − g_T) = σ_t² (aihwkit's marginal at t)."""
    expected = published_sigma(WAN[t], G_POINTS) ** 2 - published_sigma(WAN[1.0], G_POINTS) ** 2
    assert np.all(expected > 0)
    dev = _relaxed(t)
    assert abs(pooled_variance_z(dev, expected)) < N_SE
    for i in range(5):
        coeffs = list(WAN[t])
        coeffs[i] *= 1.05
        wrong = published_sigma(coeffs, G_POINTS) ** 2 - published_sigma(WAN[1.0], G_POINTS) ** 2
        assert abs(pooled_variance_z(dev, wrong)) > N_SE, i


def test_relaxation_interpolates_in_log_time_and_holds_after_two_days() -> None:
    v1d = published_sigma(WAN[86400.0], G_POINTS) ** 2 - published_sigma(WAN[1.0], G_POINTS) ** 2
    v2d = published_sigma(WAN[172800.0], G_POINTS) ** 2 - published_sigma(WAN[1.0], G_POINTS) ** 2
    f = math.log(3600.0) / math.log(86400.0)  # V(1 s) = 0
    np.testing.assert_allclose(RRAM_WAN_2022.relaxation_variance(G_POINTS, 3600.0), f * v1d, rtol=1e-12)
    np.testing.assert_allclose(RRAM_WAN_2022.relaxation_variance(G_POINTS, 3.15e7), v2d, rtol=1e-12)
    np.testing.assert_allclose(RRAM_WAN_2022.relaxation_variance(G_POINTS, 0.0), 0.0)
    assert abs(pooled_variance_z(_relaxed(3600.0), f * v1d)) < N_SE


def test_one_normal_per_device_per_call() -> None:
    g = np.full((3, 4), 10.0)
    for call in (
        lambda r: RRAM_WAN_2022.program(g, r),
        lambda r: RRAM_WAN_2022.drift_exponents(g, r),
        lambda r: RRAM_WAN_2022.read(g, np.zeros_like(g), 86400.0, r),
    ):
        a, b = np.random.default_rng(5), np.random.default_rng(5)
        call(a)
        b.standard_normal(g.shape)
        assert a.standard_normal() == b.standard_normal()


def test_round_trip_and_json() -> None:
    for dev in (RRAM_WAN_2022, devices.get(BENCH_DEVICE)):
        data = json.loads(json.dumps(dev.to_dict()))
        assert devices.from_dict(data) == dev


# -- a device written only as tables ------------------------------------------------------------------


def test_table_device_statistics_match_its_tables() -> None:
    dev = devices.get(BENCH_DEVICE)
    assert isinstance(dev, TableDevice)
    g = np.array([5.0, 7.5, 17.5, 20.0])
    expected = np.interp(g, [0, 5, 10, 15, 20, 25], [0.2, 1.2, 2.0, 1.0, 0.25, 0.9])
    rng = np.random.default_rng(3)
    x = dev.program(np.repeat(g[:, None], N, axis=1), rng) - g[:, None]
    assert abs(pooled_variance_z(x, expected**2)) < N_SE
    assert abs(pooled_variance_z(x, (1.05 * expected) ** 2)) > N_SE
    # drift exponents: folded normal of the tables' mean and std (far from 0: |.| is the identity here)
    nu = dev.drift_exponents(np.full(N, 25.0), rng)
    assert abs(nu.mean() - 0.05) < N_SE * 0.01 / math.sqrt(N)
    assert abs(nu.std() / 0.01 - 1) < N_SE * math.sqrt(0.5 / N)
    # 1/f read noise: std |g_drift| q(g) bw(t)
    gp = np.full(N, 25.0)
    t = 86400.0
    r = dev.read(gp, np.zeros_like(gp), t, rng) - gp
    bw = math.sqrt(math.log((t + 20.0 + 2.5e-7) / (2 * 2.5e-7)))
    assert abs(r.std(ddof=1) / (25.0 * 0.009 * bw) - 1) < N_SE * math.sqrt(0.5 / N)


def _write(tmp_path: Path, text: str, name: str = "d.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


BAD = [
    ("programming_sigma: {g_us: [0, 10, 5], values: [1, 1, 1]}", ["programming_sigma.g_us", "strictly increasing"]),
    ("programming_sigma: {g_us: [0, 10, 20], values: [1, -0.5, 1]}", ["programming_sigma.values[1]", "negative"]),
    ("read_q: {g_us: [0, 10, 20], values: [0.1, 0.1]}", ["read_q", "same length"]),
    ("drift_sigma: {g_us: [0, 10], values: [.nan, 0.1]}", ["drift_sigma.values[0]", "NaN"]),
    ("programming_sigma: {poly_g_hat: [0.1, -1.0]}", ["programming_sigma.poly_g_hat", "negative"]),
    ("relaxation_times_s: [1, 10]\nrelaxation_sigma: [1.0]", ["relaxation_sigma", "one curve per time"]),
    ("relaxation_times_s: [10, 1]\nrelaxation_sigma: [1.0, 1.0]", ["relaxation_times_s", "increasing"]),
    ("window_us: [5, 1]", ["window_us"]),
    ("read_bandwidth: pink", ["read_bandwidth", "1/f"]),
    ("programming_sigma: {g_us: [0, 1], value: [1, 1]}", ["programming_sigma.value", "allowed keys"]),
    ("g_max: 25", ["'g_max'", "g_max_us"]),
]


@pytest.mark.parametrize(("line", "words"), BAD)
def test_bad_table_gets_a_one_line_error_naming_the_field(tmp_path: Path, line: str, words: list[str]) -> None:
    path = _write(tmp_path, "kind: table\nname: bad\n" + line + "\n")
    with pytest.raises(DeviceError) as info:
        devices.get(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    for word in words:
        assert word in message


def test_table_file_overrides_a_table_preset(tmp_path: Path) -> None:
    path = _write(tmp_path, "base: rram_wan2022\nname: rram-45\ng_max_us: 45\n")
    dev = devices.get(path)
    assert isinstance(dev, TableDevice) and dev.g_max_us == 45.0
    assert dev.programming_sigma == RRAM_WAN_2022.programming_sigma
    with pytest.raises(DeviceError, match="kind"):
        devices.get(_write(tmp_path, "kind: tabel\n", "k.yaml"))


def test_curve_forms() -> None:
    c = Curve(poly_g_hat=((1.0, 2.0), (0.0, 0.0, 3.0)), breaks_g_hat=(0.0, 0.5, 1.0))
    np.testing.assert_allclose(c(np.array([0.0, 10.0, 30.0, 40.0, 80.0]), 40.0), [1.0, 1.5, 1.6875, 3.0, 3.0])
    t = Curve(g_us=(0.0, 10.0), values=(1.0, 3.0))
    np.testing.assert_allclose(t(np.array([-1.0, 5.0, 20.0]), 40.0), [1.0, 2.0, 3.0])


# -- the in-file chip stage of a table device against numpy -----------------------------------------------


@pytest.mark.parametrize("t", [0.0, 3600.0, 3.15e7])
def test_in_graph_table_read_matches_numpy(t: float) -> None:
    from onnx import TensorProto, helper

    from anacompile import ops
    from anacompile.crossbar.periphery import DriftCompensation
    from anacompile.runtime.functions import build_chip_weights_function, chip_weights_attributes

    dev = RRAM_WAN_2022.replace(read_q={"g_us": [0.0, 40.0], "values": [0.02, 0.01]}, drift_mu=0.03, drift_sigma=0.01)
    names = ["g_prog", "nu", "t_inference", "gdc_ref", "out_scale"]
    attrs = chip_weights_attributes(dev, (1.0,), 40.0, seed=3)
    node = helper.make_node(ops.CHIP_WEIGHTS, names, ["W", "scale"], domain=ops.DOMAIN, **attrs)
    ranks = {"g_prog": 5, "nu": 5, "t_inference": 0, "gdc_ref": 0, "out_scale": 3}
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [f"{n}{i}" for i in range(ranks[n])]) for n in names]
    outputs = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, [f"{n}{i}" for i in range(3)]) for n in ("W", "scale")
    ]
    model = helper.make_model(
        helper.make_graph([node], "g", inputs, outputs),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ops.DOMAIN, 1)],
        functions=[build_chip_weights_function(DriftCompensation.NONE, 17, dev)],
    )
    model.ir_version = 10
    onnx.checker.check_model(model, full_check=True)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(4)
    g_t = np.concatenate([np.full((1, 1, 1, 2000, 1), 12.0), np.full((1, 1, 1, 2000, 1), 20.0)], axis=1)
    g_prog = dev.program(g_t, rng)
    nu = dev.drift_exponents(g_t, rng)
    feeds = {
        "g_prog": g_prog.astype(np.float32),
        "nu": nu.astype(np.float32),
        "t_inference": np.array(t, np.float32),
        "gdc_ref": np.array(1, np.float32),
        "out_scale": np.ones((1, 1, 1), np.float32),
    }
    w = np.concatenate([sess.run(["W"], feeds)[0] for _ in range(20)], axis=-1)[0]  # (rows, draws)
    gp, gn = g_prog[0, 0, 0, :, 0], g_prog[0, 1, 0, :, 0]
    nup, nun = nu[0, 0, 0, :, 0], nu[0, 1, 0, :, 0]
    mean = (dev.drift(gp, nup, t) - dev.drift(gn, nun, t)) / 40.0
    sd = np.hypot(dev.read_sigma_us(gp, nup, t), dev.read_sigma_us(gn, nun, t)) / 40.0
    z = (w - mean[:, None]) / sd[:, None]
    assert abs(z.mean()) < N_SE / math.sqrt(z.size)
    assert abs(z.std() - 1.0) < N_SE * math.sqrt(0.5 / z.size)
