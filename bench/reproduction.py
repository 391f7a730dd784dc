"""Reproduction study of the PCM papers' claims on the shipped models; writes docs/reproduction.md.

Usage: python bench/reproduction.py [--chips 25] [--workers 2] [--seed 0] [--out docs]

For the MLP, CNN and LSTM, FP-trained and noise-trained (models/), compiled for PCM with the standard
periphery and digits calibration: accuracy at 1 s, 1 h, 1 d, 1 y with no compensation, global drift
compensation and AdaBS, mean +- std over --chips chips (every chip from its own seed, so a re-run with the
same seed gives the same numbers). Then checks the qualitative claims of Joshi et al. 2020 (d) and Rasch et
al. 2023 (c) (reference/papers.md, numbers 5 and 6), reporting each as holds / does not hold with the
numbers; nothing is tuned to make a claim hold. Also writes one plot per model and the raw results as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anacompile.compiler import compile_model  # noqa: E402
from anacompile.evaluate.monte_carlo import evaluate  # noqa: E402
from anacompile.evaluate.plot import plot_accuracy_over_time  # noqa: E402
from anacompile.evaluate.times import format_time  # noqa: E402

FAMILIES = {"MLP": "digits_mlp", "CNN": "digits_cnn", "LSTM": "digits_lstm"}
TRAININGS = {"FP": "fp", "HWA": "hwa"}
MODES = ("none", "global", "adabs")
TIMES = "1s,1h,1d,1y"
COLLAPSE_POINTS = 5.0  # (i): a drop of more than 5 accuracy points from 1 s to 1 y counts as a collapse


def _se(std: float, n: int) -> float:
    return std / np.sqrt(n)


def run(chips: int, workers: int, seed: int, out: Path) -> dict:
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for fam, stem in FAMILIES.items():
            for tr, suffix in TRAININGS.items():
                src = ROOT / "models" / f"{stem}_{suffix}.onnx"
                compiled = Path(tmp) / f"{stem}_{suffix}.analog.onnx"
                report = compile_model(src, compiled, calibration="digits", seed=seed)
                analog = report.totals["analog_layers"]
                for mode in MODES:
                    t0 = time.perf_counter()
                    r = evaluate(compiled, times=TIMES, chips=chips, seed=seed, compensation=mode, workers=workers)
                    results[(fam, tr, mode)] = r
                    print(
                        f"{fam} {tr} {mode}: {[round(a * 100, 2) for a in r.accuracy_mean]} "
                        f"({time.perf_counter() - t0:.1f} s, {analog} analog layers)",
                        flush=True,
                    )
    return results


def claims(res: dict, chips: int) -> list[tuple[str, bool, str]]:
    out = []
    pts = lambda r, j: 100 * r.accuracy_mean[j]  # noqa: E731
    # (i) without compensation accuracy collapses with time
    drops = {(f, t): pts(res[(f, t, "none")], 0) - pts(res[(f, t, "none")], 3) for f in FAMILIES for t in TRAININGS}
    holds = all(d > COLLAPSE_POINTS for d in drops.values())
    out.append(
        (
            "(i) without compensation, accuracy collapses with time (drop 1 s -> 1 y > "
            f"{COLLAPSE_POINTS:g} points for every model)",
            holds,
            ", ".join(f"{f} {t}: -{d:.1f}" for (f, t), d in drops.items()),
        )
    )
    # (ii) global compensation recovers most of it
    rec = {}
    for f in FAMILIES:
        for t in TRAININGS:
            lost = pts(res[(f, t, "none")], 0) - pts(res[(f, t, "none")], 3)
            back = pts(res[(f, t, "global")], 3) - pts(res[(f, t, "none")], 3)
            rec[(f, t)] = back / lost if lost > 0.5 else float("nan")
    valid = [v for v in rec.values() if np.isfinite(v)]
    out.append(
        (
            "(ii) global drift compensation recovers most of the loss at 1 y (> 50 %)",
            bool(valid) and all(v > 0.5 for v in valid),
            ", ".join(
                f"{f} {t}: {'n/a (no loss)' if not np.isfinite(v) else f'{100 * v:.0f} %'}" for (f, t), v in rec.items()
            ),
        )
    )
    # (iii) AdaBS >= global at 1 day (within 2 standard errors), where the model has BatchNormalization
    cmp = []
    ok = True
    for t in TRAININGS:
        a, g = res[("CNN", t, "adabs")], res[("CNN", t, "global")]
        diff = pts(a, 2) - pts(g, 2)
        se = 100 * np.hypot(_se(a.accuracy_std[2], chips), _se(g.accuracy_std[2], chips))
        ok &= diff >= -2 * se
        cmp.append(f"CNN {t}: AdaBS {pts(a, 2):.2f} vs global {pts(g, 2):.2f} (diff {diff:+.2f} +- {se:.2f})")
    out.append(
        ("(iii) AdaBS >= global compensation at 1 day (CNN, the model with BatchNormalization)", ok, "; ".join(cmp))
    )
    # (iv) noise-trained >= FP-trained at every time (global compensation)
    worse = []
    for f in FAMILIES:
        h, p = res[(f, "HWA", "global")], res[(f, "FP", "global")]
        for j in range(4):
            se = 100 * np.hypot(_se(h.accuracy_std[j], chips), _se(p.accuracy_std[j], chips))
            if pts(h, j) < pts(p, j) - 2 * se:
                worse.append(f"{f} at {format_time(h.times_s[j])}: HWA {pts(h, j):.2f} < FP {pts(p, j):.2f}")
    out.append(
        (
            "(iv) the noise-trained model >= the FP-trained one at every time (global compensation, "
            "within 2 standard errors)",
            not worse,
            "; ".join(worse) or "holds everywhere",
        )
    )
    # (v) the recurrent model is the most robust (smallest normalised loss from FP32 baseline at 1 y, global)
    loss = {}
    for f in FAMILIES:
        r = res[(f, "HWA", "global")]
        loss[f] = 100 * (r.baseline - r.accuracy_mean[3])
    best = min(loss, key=loss.get)
    out.append(
        (
            "(v) the recurrent model (LSTM) is the most robust (smallest loss vs its FP32 baseline at 1 y, "
            "HWA, global compensation)",
            best == "LSTM",
            ", ".join(f"{f}: {v:.2f} points" for f, v in loss.items()),
        )
    )
    return out


def write(res: dict, chips: int, workers: int, seed: int, out: Path, elapsed: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Reproduction study: PCM drift, compensation and hardware-aware training on the shipped models",
        "",
        f"Generated by `python bench/reproduction.py --chips {chips} --workers {workers} --seed {seed}` "
        f"({elapsed / 60:.1f} min). Device `pcm` (Joshi et al. 2020 statistical model), periphery `standard` "
        "(Rasch et al. 2023), static input ranges calibrated on the digits training split, one differential "
        "pair per weight. Accuracy on the 540 digits test images, mean +- std over chips; every chip is "
        "programmed from its own seed, so re-running the command reproduces these numbers exactly.",
        "",
        "## Accuracy (%)",
        "",
        "| model | training | compensation | FP32 | "
        + " | ".join(format_time(t) for t in next(iter(res.values())).times_s)
        + " |",
        "|---|---|---|---|" + "---|" * 4,
    ]
    for (fam, tr, mode), r in res.items():
        cells = [f"{100 * m:.2f} ± {100 * s:.2f}" for m, s in zip(r.accuracy_mean, r.accuracy_std, strict=True)]
        lines.append(f"| {fam} | {tr} | {mode} | {100 * r.baseline:.2f} | " + " | ".join(cells) + " |")
    lines += ["", "## The papers' qualitative claims on these models", ""]
    for text, holds, numbers in claims(res, chips):
        lines.append(f"- **{'holds' if holds else 'does not hold'}** — {text}: {numbers}.")
    lines += [
        "",
        "## Reading the results",
        "",
        "- AdaBS equals global compensation for the MLP and the LSTM: they have no BatchNormalization, so "
        "`adabs` falls back to global compensation (the evaluation says so in its notes).",
        "- Where (i) does not hold it is the MLP: a ReLU network without normalisation is almost invariant "
        "to a common scale of its weights, and drift shrinks most conductances by a similar factor "
        "((t/t0)^-nu with nu ~ 0.05-0.1), so the arg-max of the logits barely moves; only the spread of nu "
        "between devices and the fixed digital biases change decisions. The CNN (BatchNormalization with "
        "fixed statistics) and the LSTM (gates with fixed biases, saturating nonlinearities) collapse as "
        "Joshi et al. 2020 report for ResNet-32. (Interpretation, not a separate experiment.)",
        "- (v) compares small digits models; Rasch et al. 2023 make the claim for large networks "
        "(LSTM language/speech models vs ImageNet CNNs). Here the LSTM loses the most after compensation, "
        "probably because the drift-compensation factor is one scalar per layer while the recurrent state "
        "feeds the errors of every step into the next (hypothesis).",
        "",
        "## Plots",
        "",
    ]
    for fam in FAMILIES:
        for tr in TRAININGS:
            name = f"reproduction_{fam.lower()}_{tr.lower()}.png"
            rs = [res[(fam, tr, m)] for m in MODES]
            plot_accuracy_over_time(
                rs,
                out / name,
                labels=[f"{m} compensation" for m in MODES],
                title=f"{fam} ({tr}-trained) on PCM, {chips} chips",
            )
            lines.append(f"![{fam} {tr}]({name})")
    (out / "reproduction.md").write_text("\n".join(lines) + "\n")
    raw = {f"{k[0]}/{k[1]}/{k[2]}": v.to_dict() for k, v in res.items()}
    (out / "reproduction.json").write_text(json.dumps(raw, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chips", type=int, default=25)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "docs"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    res = run(args.chips, args.workers, args.seed, Path(args.out))
    write(res, args.chips, args.workers, args.seed, Path(args.out), time.perf_counter() - t0)
    print(f"wrote {Path(args.out) / 'reproduction.md'}")


if __name__ == "__main__":
    main()
