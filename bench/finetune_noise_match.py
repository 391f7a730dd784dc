"""Does the fine-tuning noise match what the chip does? Per-layer MVM error of the training simulator vs the chip.

    python bench/finetune_noise_match.py --model models/digits_lstm_fp.onnx --chips 10 --draws 10

For every analog layer, eps_M = ||y_analog - x W|| / ||x W|| on the digits test inputs (each layer fed its ideal
FP32 input, no bias): on the compiled chip (``anacompile mvm-error``, global drift compensation, at 1 s, 1 d and
1 y) and in the tile model ``anacompile finetune`` trains with (:mod:`anacompile.finetune.hwa`, ``--draws`` noise
draws) for each periphery / eta asked for (``--train-periphery``, ``--eta``; ``device`` = the level derived from
the device model at the time). Also prints the device-derived weight error of the model's weights
(:func:`anacompile.finetune.device_noise.device_eta`) and the end-to-end accuracy of the training simulator.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anacompile.compiler import compile_model  # noqa: E402
from anacompile.evaluate.mvm_error import mvm_error  # noqa: E402


def simulator_errors(
    model: Path, periphery: str, eta, draws: int, samples: int, t_s: float, draw: str = "batch", seed: int = 0
) -> dict:
    """Per-layer eps_M and accuracy of the training simulator on the test inputs."""
    import torch

    from anacompile.crossbar.periphery import get_periphery
    from anacompile.feeds import load_feeds
    from anacompile.finetune.device_noise import device_etas
    from anacompile.finetune.hwa import AnalogSimulator, HWANoise
    from anacompile.finetune.lowering import OnnxModule
    from anacompile.finetune.train import analog_layer_names, calibrate_simulator
    from anacompile.model_io import load_proto

    proto = load_proto(model)
    peri = get_periphery(periphery)
    module = OnnxModule(proto)
    layers, _ = analog_layer_names(proto, peri.tile_rows)
    gen = torch.Generator().manual_seed(seed)
    sim = AnalogSimulator(peri, HWANoise(0.0, draw=draw), set(layers), gen)
    module.mvm_hook = sim
    cal, _ = load_feeds("digits", proto, part="train")
    test, labels = load_feeds("digits", proto, part="test")
    names = module.input_names
    calibrate_simulator(module, sim, {k: torch.from_numpy(v) for k, v in cal.items()}, names)
    if eta == "device":  # each layer its own device error, as finetune's default
        sim.layer_eta = device_etas(sim.weights, times=[t_s])
        eta_value = float(np.mean(list(sim.layer_eta.values())))
    else:
        eta_value = float(eta)
    sim.noise = HWANoise(eta_value, draw=draw)
    sub = {k: torch.from_numpy(v[:samples]) for k, v in test.items()}
    num: dict[str, float] = {}
    den: dict[str, float] = {}

    def measure(spec, x, w, fn):
        y = fn(x, w)
        if spec.key in layers:
            ya = sim._analog(spec, x, w, fn)
            num[spec.key] = num.get(spec.key, 0.0) + float(((ya - y) ** 2).sum())
            den[spec.key] = den.get(spec.key, 0.0) + float((y**2).sum())
        return y

    errs: dict[str, list[float]] = {}
    accs = []
    full = {k: torch.from_numpy(v) for k, v in test.items()}
    with torch.no_grad():
        for _ in range(draws):
            sim.new_draw()
            num.clear()
            den.clear()
            module.mvm_hook = measure
            module(*[sub[k] for k in names])
            for k in num:
                errs.setdefault(k, []).append((num[k] / max(den[k], 1e-30)) ** 0.5)
            module.mvm_hook = sim
            sim.new_draw()
            out = module(*[full[k] for k in names])[0]
            accs.append(float((out.argmax(-1).numpy() == labels).mean()) * 100)
    return {
        "eta": eta_value,
        "layer_eta": dict(sim.layer_eta),
        "layers": {k: [float(np.mean(v)), float(np.std(v))] for k, v in errs.items()},
        "accuracy": [float(np.mean(accs)), float(np.std(accs))],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "digits_lstm_fp.onnx")
    ap.add_argument("--chips", type=int, default=10)
    ap.add_argument("--draws", type=int, default=10)
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--times", default="1s,1d,1y")
    ap.add_argument("--train-periphery", default="standard,calibrated")
    ap.add_argument("--eta", default="0.06,device")
    ap.add_argument("--draw", default="batch", help="weight-noise draw of the simulator: batch or product")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from anacompile.evaluate.times import parse_times

    times = parse_times(args.times)
    out: dict = {"model": str(args.model)}
    with tempfile.TemporaryDirectory() as tmp:
        compiled = Path(tmp) / "m.analog.onnx"
        compile_model(args.model, compiled, calibration="digits", force=True)
        chip = mvm_error(
            compiled, "digits", times=args.times, chips=args.chips, compensation="global", samples=args.samples
        )
    out["chip"] = {
        "layers": chip.layers,
        "error_mean": chip.error_mean,
        "error_std": chip.error_std,
    }
    print(f"chip (compiled, calibrated periphery, global compensation, {args.chips} chips), eps_M at {args.times}:")
    for name, m, s in zip(chip.layers, chip.error_mean, chip.error_std, strict=True):
        print(f"  {name:40s} " + "  ".join(f"{a:.4f} +- {b:.4f}" for a, b in zip(m, s, strict=True)))
    out["simulator"] = []
    for peri in args.train_periphery.split(","):
        for eta in args.eta.split(","):
            for t, label in zip(times, args.times.split(","), strict=True):
                if eta != "device" and t != times[len(times) // 2]:
                    continue  # a fixed eta does not depend on the time: once
                r = simulator_errors(args.model, peri, eta, args.draws, args.samples, t, args.draw)
                r.update(periphery=peri, eta_spec=eta, time=label)
                out["simulator"].append(r)
                print(
                    f"simulator periphery={peri} eta={eta} ({r['eta']:.4f}, t={label}): accuracy "
                    f"{r['accuracy'][0]:.2f} +- {r['accuracy'][1]:.2f}"
                )
                for k, (m, s) in r["layers"].items():
                    eta_k = r["layer_eta"].get(k, r["eta"])
                    print(f"  {k:40s} {m:.4f} +- {s:.4f}  (eta {eta_k:.4f})")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
