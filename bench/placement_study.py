"""Placement study: per-layer sensitivity, the placement found for a 0.02 budget at 1 d, and the metric over
1 s .. 1 y before (every layer analog, one pair) and after (the placement), on the FP32 example models and
on a real model of another project (paraphrase-MiniLM-L3-v2, cosine to FP32 on the shipped sentences).

    python bench/placement_study.py [--models mlp,cnn,lstm,transformer,minilm] [--chips 3] [--eval-chips 5]

Writes bench/out/placement/<model>.{sensitivity.json,sensitivity.png,placement.json,search.png,analog.onnx}
and bench/out/placement/study.json, and prints the markdown tables used in docs/placement.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "placement"
TIMES = "1s,1h,1d,1y"
DIGITS = {
    "mlp": "digits_mlp_fp.onnx",
    "cnn": "digits_cnn_fp.onnx",
    "lstm": "digits_lstm_fp.onnx",
    "transformer": "digits_transformer_fp.onnx",
}


class SentenceCosine:
    """A user's metric callable for a sentence-embedding model: mean cosine to the FP32 embeddings
    (output '461' of MiniLM, the 4th output), on the 50 shipped sentences."""

    def __init__(self, fp32_path: Path) -> None:
        import onnxruntime as ort

        from anacompile.evaluate.metrics import load_sentences, sentence_feeds

        self.feeds = sentence_feeds(load_sentences())
        sess = ort.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        self.index = names.index("461")
        self.ref = sess.run(["461"], self.feeds)[0]
        self.__name__ = "sentence_cosine"

    def __call__(self, run) -> float:
        from anacompile.evaluate.metrics import cosine_similarity

        return float(np.mean(cosine_similarity(run(self.feeds)[self.index], self.ref)))


def study(name: str, source: Path, metric, data, calibration, chips: int, eval_chips: int) -> dict:
    from anacompile.compiler import compile_model
    from anacompile.evaluate.monte_carlo import evaluate
    from anacompile.placement.plot import plot_sensitivity
    from anacompile.placement.search import place
    from anacompile.placement.sensitivity import sensitivity

    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    sens = sensitivity(source, metric=metric, data=data, times="1s,1d", chips=chips, calibration=calibration)
    t_sens = time.perf_counter() - t0
    sens.save_json(OUT / f"{name}.sensitivity.json")
    plot_sensitivity(sens, OUT / f"{name}.sensitivity.png")
    t0 = time.perf_counter()
    placed = place(
        source,
        OUT / f"{name}.analog.onnx",
        accuracy_budget=0.02,
        at="1d",
        metric=metric,
        data=data,
        chips=chips,
        calibration=calibration,
        placement_path=OUT / f"{name}.placement.json",
        plot=OUT / f"{name}.search.png",
        force=True,
    )
    t_place = time.perf_counter() - t0
    before_path = OUT / f"{name}.all_analog.onnx"
    compile_model(source, before_path, calibration=calibration, force=True)
    before = evaluate(before_path, data=data, times=TIMES, chips=eval_chips, seed=100, metric=metric)
    after = evaluate(placed.output, data=data, times=TIMES, chips=eval_chips, seed=100, metric=metric)
    row = {
        "model": name,
        "metric": placed.metric,
        "baseline": placed.baseline,
        "layers": len(sens.layers),
        "ranking": [(la.name, la.loss_alone) for la in sens.layers],
        "digital": placed.digital,
        "layer_strategies": placed.layer_strategies,
        "analog_mac_share": placed.analog_mac_share,
        "analog_parameter_share": placed.analog_parameter_share,
        "devices": placed.devices,
        "verified_mean": placed.verified_mean,
        "verified_std": placed.verified_std,
        "meets": placed.meets_budget,
        "evaluations": placed.evaluations,
        "sensitivity_s": t_sens,
        "placement_s": t_place,
        "before_mean": before.accuracy_mean,
        "before_std": before.accuracy_std,
        "after_mean": after.accuracy_mean,
        "after_std": after.accuracy_std,
    }
    print(
        json.dumps(
            {
                k: row[k]
                for k in (
                    "model",
                    "digital",
                    "layer_strategies",
                    "analog_mac_share",
                    "meets",
                    "verified_mean",
                    "baseline",
                    "sensitivity_s",
                    "placement_s",
                )
            }
        ),
        flush=True,
    )
    return row


def markdown(rows: list[dict]) -> str:
    lines = [
        "| model | metric | FP32 | most sensitive (loss alone analog, 1 d) | placement | analog MACs | devices "
        "| fresh chips at 1 d | configs | time (sens. + place) |",
        "|---|" * 1 + "---|" * 9,
    ]
    for r in rows:
        top = ", ".join(f"{n} {loss:.3f}" for n, loss in r["ranking"][:3])
        where = (
            ", ".join(
                [
                    *(f"{n} digital" for n in r["digital"]),
                    *(
                        f"{n} {s.replace('npair:significance=1,2,4', '3 pairs')}"
                        for n, s in r["layer_strategies"].items()
                    ),
                ]
            )
            or "all analog, one pair"
        )
        lines.append(
            f"| {r['model']} | {r['metric']} | {r['baseline']:.4f} | {top} | {where} | "
            f"{r['analog_mac_share']:.1%} | {r['devices']:,} | {r['verified_mean']:.4f} +- "
            f"{r['verified_std']:.4f} ({'meets' if r['meets'] else 'misses'}) | {r['evaluations']} | "
            f"{r['sensitivity_s']:.0f} s + {r['placement_s']:.0f} s |"
        )
    lines += ["", "| model | | " + " | ".join(TIMES.split(",")) + " |", "|---|---|" + "---|" * 4]
    for r in rows:
        for label, m, s in (
            ("all analog", r["before_mean"], r["before_std"]),
            ("placed", r["after_mean"], r["after_std"]),
        ):
            lines.append(
                f"| {r['model']} | {label} | "
                + " | ".join(f"{a:.4f} +- {b:.4f}" for a, b in zip(m, s, strict=True))
                + " |"
            )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--models", default="mlp,cnn,lstm,transformer,minilm")
    p.add_argument("--chips", type=int, default=3)
    p.add_argument("--eval-chips", type=int, default=5)
    args = p.parse_args()
    rows = []
    for name in args.models.split(","):
        if name == "minilm":
            from anacompile.evaluate.embeddings import minilm_model_path

            src = minilm_model_path()
            rows.append(study(name, src, SentenceCosine(src), None, None, args.chips, args.eval_chips))
        else:
            rows.append(
                study(name, ROOT / "models" / DIGITS[name], "accuracy", "digits", "digits", args.chips, args.eval_chips)
            )
        (OUT / "study.json").write_text(json.dumps(rows, indent=2))
    print(markdown(rows))


if __name__ == "__main__":
    main()
