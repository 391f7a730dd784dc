"""Hardware-aware training noise: statistics of the weight noise, the tile arithmetic against the numpy reference."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the finetune tests need the train extra (torch==2.13.0)")

from anacompile.crossbar.periphery import get_periphery  # noqa: E402
from anacompile.crossbar.reference import analog_matmul_reference  # noqa: E402
from anacompile.finetune.hwa import HWA_ETA, AnalogSimulator, HWANoise, round_ste, weight_noise  # noqa: E402
from anacompile.finetune.lowering import MVMSpec  # noqa: E402

SPEC = MVMSpec("layer", (0,), lambda g: g.reshape(-1))


def _noise_std_check(eta_used: float, eta_claimed: float) -> bool:
    """Per-column std of the noise equals eta * max|w| of that column, within 5 standard errors."""
    g = torch.Generator().manual_seed(3)
    w = torch.rand(2000, 50, generator=g, dtype=torch.float64) * torch.linspace(0.1, 2.0, 50, dtype=torch.float64)
    n = weight_noise(w, eta_used, g, reduce=(0,))
    expected = eta_claimed * w.abs().amax(dim=0)
    std = n.std(dim=0)
    se = expected / np.sqrt(2 * w.shape[0])
    # one test over all 50 columns: the mean of the standardised deviations (1e5 samples in all)
    z = ((std - expected) / se).mean() * np.sqrt(w.shape[1])
    return bool(abs(z) < 5)


def test_weight_noise_std_is_eta_times_column_max():
    assert _noise_std_check(HWA_ETA, HWA_ETA)


def test_weight_noise_check_detects_a_five_percent_error():
    assert not _noise_std_check(HWA_ETA * 1.05, HWA_ETA)


def test_tensor_scope_uses_one_max():
    g = torch.Generator().manual_seed(4)
    w = torch.ones(400, 300, dtype=torch.float64)
    w[0, 0] = 10.0
    n = weight_noise(w, 0.05, g)
    assert abs(float(n.std()) - 0.5) < 5 * 0.5 / np.sqrt(2 * n.numel())


def test_round_ste_rounds_forward_and_passes_gradients():
    x = torch.tensor([0.4, 1.6, -2.5], requires_grad=True)
    y = round_ste(x)
    y.sum().backward()
    assert y.tolist() == [0.0, 2.0, -2.0]
    assert x.grad.tolist() == [1.0, 1.0, 1.0]


def _sim(periphery, ranges):
    sim = AnalogSimulator(periphery, HWANoise(eta=0.0), {"layer"}, torch.Generator().manual_seed(0), mode="noisy")
    sim.ranges = {"layer": torch.tensor([ranges], dtype=torch.float64)}
    return sim


@pytest.mark.parametrize("overrides", [{}, {"adc_bits": 6, "adc_bound": 4.0}, {"dac_bits": 5}])
def test_noiseless_tile_matches_the_numpy_reference(overrides):
    """DAC, per-column scaling, ADC rounding and clipping: the same arithmetic as the compiler's reference."""
    peri = get_periphery("standard", {"read_noise": 0, "out_noise": 0, "ir_drop": 0, **overrides})
    rng = np.random.default_rng(5)
    x = rng.normal(size=(64, 40)).astype(np.float32)
    w = rng.normal(size=(40, 12)).astype(np.float32)
    bias = np.zeros(12, np.float32)
    alpha_in = 2.0  # clips some inputs
    gamma = np.abs(w).max(axis=0, keepdims=True)
    ref = analog_matmul_reference(
        x,
        (w / gamma).astype(np.float32),
        gamma.astype(np.float32),
        np.array([[alpha_in]], np.float32),
        np.ones((1, 12), np.float32),
        bias,
        peri,
    )
    sim = _sim(peri, alpha_in)
    got = sim(SPEC, torch.from_numpy(x).double(), torch.from_numpy(w).double(), torch.matmul).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * float(np.abs(ref).max()))
    exact = x @ w
    assert not np.allclose(got, exact, atol=1e-3)  # the converters do change the result


def test_output_noise_std_matches_the_periphery():
    peri = get_periphery("ideal", {"out_noise": 0.04})
    sim = _sim(peri, 1.0)
    x = torch.zeros(50_000, 4, dtype=torch.float64)
    w = torch.eye(4, dtype=torch.float64)
    y = sim(SPEC, x, w, torch.matmul)
    assert abs(float(y.std()) - 0.04) < 5 * 0.04 / np.sqrt(2 * y.numel())


def test_calibration_records_the_largest_input_per_group():
    peri = get_periphery("standard")
    sim = AnalogSimulator(peri, HWANoise(), {"conv"}, torch.Generator().manual_seed(0), mode="calibrate")
    spec = MVMSpec("conv", (1, 2, 3), lambda g: g.reshape(1, -1, 1, 1), groups=2, channel_axis=1)
    x = torch.zeros(3, 4, 2, 2)
    x[1, 1, 0, 0], x[2, 3, 1, 1] = -5.0, 2.0
    sim(spec, x, torch.ones(4, 2, 1, 1), lambda a, b: torch.nn.functional.conv2d(a, b, groups=2))
    sim.finish_calibration(learn=False)
    assert sim.input_range("conv").tolist() == [5.0, 2.0]


def test_calibrated_output_range_is_the_compilers_gain_and_matches_the_reference():
    """output_range: calibrated: g = B / P(|x^ u|), applied before the ADC and divided out after it."""
    peri = get_periphery("calibrated", {"read_noise": 0, "out_noise": 0, "ir_drop": 0})
    rng = np.random.default_rng(6)
    x = rng.normal(size=(256, 40)).astype(np.float32)
    w = rng.normal(size=(40, 12)).astype(np.float32)
    alpha_in = float(np.abs(x).max())  # no DAC clipping: the ADC's rounding is the error left
    sim = _sim(peri, alpha_in)
    sim.mode = "calibrate_output"
    sim(SPEC, torch.from_numpy(x).double(), torch.from_numpy(w).double(), torch.matmul)
    sim.finish_output_calibration()
    sim.mode = "noisy"
    gamma = np.abs(w).max(axis=0, keepdims=True)
    # the compiler's CalibrateOutputRangesPass arithmetic: DAC codes q, weights in ADC codes per DAC code
    d, big_d = peri.dac_step, peri.adc_step
    q = np.round(np.clip(x / alpha_in / d, -peri.dac_bound / d, peri.dac_bound / d))
    z = np.abs(q @ (w / gamma * (d / big_d)))
    g = (peri.adc_bound / big_d) / np.percentile(z, peri.output_range_percentile)
    assert g > 1.5  # these outputs stay well inside the fixed bound: the gain matters
    assert sim.gains["layer"] == pytest.approx(g, rel=1e-6)
    ref = analog_matmul_reference(
        x,
        (w / gamma).astype(np.float32),
        gamma.astype(np.float32),
        np.array([[alpha_in]], np.float32),
        np.ones((1, 12), np.float32),
        np.zeros(12, np.float32),
        peri,
        out_gain=np.array([[g]], np.float32),
    )
    got = sim(SPEC, torch.from_numpy(x).double(), torch.from_numpy(w).double(), torch.matmul).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * float(np.abs(ref).max()))
    sim.gains.clear()  # the fixed range quantises these small outputs more coarsely
    coarse = sim(SPEC, torch.from_numpy(x).double(), torch.from_numpy(w).double(), torch.matmul).numpy()
    exact = x @ w
    assert np.linalg.norm(coarse - exact) > 1.5 * np.linalg.norm(got - exact)


@pytest.mark.parametrize("draw", ["batch", "product"])
def test_weight_noise_is_drawn_once_per_forward_pass(draw):
    """draw=batch: every product of a layer in one forward pass (an LSTM's time steps) sees one weight error."""
    peri = get_periphery("ideal")
    sim = AnalogSimulator(peri, HWANoise(eta=0.1, draw=draw), {"layer"}, torch.Generator().manual_seed(0))
    sim.mode = "noisy"
    x, w = torch.eye(8, dtype=torch.float64), torch.ones(8, 3, dtype=torch.float64)
    first, second = sim(SPEC, x, w, torch.matmul), sim(SPEC, x, w, torch.matmul)
    assert torch.equal(first, second) == (draw == "batch")
    sim.new_draw()
    assert not torch.equal(sim(SPEC, x, w, torch.matmul), first)
    assert float((first - w).std()) == pytest.approx(0.1, rel=0.5)


def _device_eta_check(claimed: float) -> bool:
    """Programming noise only (no drift, no 1/f read noise), weights all at +-max: eta = sigma_prog(1) / g_max."""
    from anacompile.finetune.device_noise import device_eta

    rng = np.random.default_rng(7)
    u = np.where(rng.random((128, 64)) < 0.5, -1.0, 1.0)
    pcm = ["drift.drift_scale=0", "read_noise.q_coefficient=0"]
    from anacompile import devices

    got = device_eta([u], devices.get("pcm", pcm), "single", "1s", repeats=8, seed=1)
    se = claimed / np.sqrt(2 * u.size * 8)
    return abs(got - claimed) < 5 * se


def test_device_eta_is_the_devices_programming_noise():
    sigma = 0.26348 + 1.9650 - 1.1731  # papers.md: sigma_prog(1) = 1.0554 uS at g_max 25 uS
    assert _device_eta_check(sigma / 25.0)
    assert not _device_eta_check(1.05 * sigma / 25.0)


def test_device_eta_grows_with_time():
    from anacompile.finetune.device_noise import device_eta

    u = np.random.default_rng(8).normal(size=(72, 64))
    etas = [device_eta([u], "pcm", "single", t, repeats=4) for t in ("1s", "1d", "1y")]
    assert 0.02 < etas[0] < etas[1] < etas[2] < 0.12


def test_device_etas_give_each_layer_its_own_error():
    """Weights all at full scale meet the largest programming noise; a Gaussian layer's mostly small weights less."""
    from anacompile.finetune.device_noise import device_eta, device_etas

    rng = np.random.default_rng(9)
    full = np.where(rng.random((64, 32)) < 0.5, -1.0, 1.0)
    gauss = rng.normal(size=(64, 32))
    etas = device_etas({"full": full, "gauss": gauss}, times="1s", repeats=4)
    assert etas["full"] > 1.2 * etas["gauss"]
    assert etas["full"] == device_eta([full], times="1s", repeats=4, seed=0)  # sorted keys: seed + index


def test_layer_eta_replaces_the_global_level():
    peri = get_periphery("ideal")
    sim = AnalogSimulator(
        peri, HWANoise(eta=0.5), {"layer"}, torch.Generator().manual_seed(0), layer_eta={"layer": 0.02}
    )
    sim.mode = "noisy"
    w = torch.ones(4000, 3, dtype=torch.float64)
    u, _ = sim._weight(SPEC, w)
    assert float((u * 1 - 1).std()) == pytest.approx(0.02, rel=0.05)
