"""Placement on real OCR models of another project: rapidocr-onnxruntime 1.4.4's MobileNetV3 text-direction
classifier (``ch_ppocr_mobile_v2.0_cls_infer.onnx``, opset 11) and PP-OCRv4 SVTR text recogniser
(``ch_PP-OCRv4_rec_infer.onnx``, opset 12), with the users' metrics written as callables.

Get the files (no network at run time afterwards)::

    pip download --no-deps rapidocr-onnxruntime==1.4.4 -d /tmp/whl && unzip -o /tmp/whl/rapidocr*.whl -d /tmp/rapidocr
    python bench/placement_real.py --root /tmp/rapidocr [--models cls,rec] [--chips 3]

Data: text lines rendered with Pillow's bundled font (random words and numbers, a fixed seed), as PaddleOCR
preprocesses them (height 48, RGB, (x/255 - 0.5) / 0.5). The classifier's labels are known (half of the lines
are turned 180 degrees): metric = accuracy. The recogniser's metric is label-free: the share of lines whose
greedy CTC decoding equals the FP32 model's.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "placement_real"
WORDS = (
    "analog",
    "memory",
    "crossbar",
    "drift",
    "phase",
    "change",
    "device",
    "tile",
    "model",
    "chip",
    "signal",
    "noise",
    "layer",
    "weight",
    "vector",
    "matrix",
    "silicon",
    "volt",
    "ohm",
    "paper",
    "Zurich",
    "2026",
    "1999",
    "42",
    "OCR",
    "text",
    "line",
    "green",
    "river",
    "north",
)


def text_lines(n: int, width: int, seed: int, words: int = 3) -> tuple[np.ndarray, list[str]]:
    """n rendered text lines (n, 3, 48, width), float32 in PaddleOCR's normalisation, and their texts."""
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    font = ImageFont.load_default(size=28)
    out, texts = np.zeros((n, 3, 48, width), np.float32), []
    for i in range(n):
        text = " ".join(rng.choice(WORDS, size=int(rng.integers(1, words + 1))))
        im = Image.new("RGB", (width, 48), (255, 255, 255))
        ImageDraw.Draw(im).text((int(rng.integers(2, 12)), 8), text, fill=(0, 0, 0), font=font)
        a = np.asarray(im, np.float32).transpose(2, 0, 1) / 255.0
        out[i] = (a - 0.5) / 0.5
        texts.append(text)
    return out, texts


class DirectionAccuracy:
    """cls: accuracy of the 0/180 degree decision on lines of which every second is turned."""

    def __init__(self, n: int = 96) -> None:
        x, _ = text_lines(n, 192, seed=1)
        x[1::2] = x[1::2, :, ::-1, ::-1]
        self.x, self.y = np.ascontiguousarray(x), np.arange(n) % 2
        self.__name__ = "direction_accuracy"

    def __call__(self, run) -> float:
        return float(np.mean(np.argmax(run({"x": self.x})[0], axis=1) == self.y))


def edit_distance(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """Levenshtein distance between two label sequences."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, start=1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


class CharAgreement:
    """rec: character accuracy against the FP32 model's greedy CTC decoding (blank 0), over all lines:
    1 - sum(edit distance) / sum(FP32 string lengths), floored at 0 (steps of 1 / characters)."""

    def __init__(self, fp32: Path, n: int = 16, width: int = 320, words: int = 3) -> None:
        import onnxruntime as ort

        self.x, _ = text_lines(n, width, seed=2, words=words)
        self.ref = StringAgreement.decode(ort.InferenceSession(str(fp32)).run(None, {"x": self.x})[0])
        self.__name__ = "char_agreement"

    def __call__(self, run) -> float:
        got = StringAgreement.decode(run({"x": self.x})[0])
        errors = sum(edit_distance(a, b) for a, b in zip(got, self.ref, strict=True))
        return max(0.0, 1.0 - errors / max(sum(len(r) for r in self.ref), 1))


class StringAgreement:
    """rec: share of lines whose greedy CTC decoding (blank 0) equals the FP32 model's decoding."""

    def __init__(self, fp32: Path, n: int = 48) -> None:
        import onnxruntime as ort

        self.x, _ = text_lines(n, 320, seed=2)
        self.ref = self.decode(ort.InferenceSession(str(fp32)).run(None, {"x": self.x})[0])
        self.__name__ = "string_agreement"

    @staticmethod
    def decode(probs: np.ndarray) -> list[tuple[int, ...]]:
        out = []
        for seq in probs.argmax(-1):
            keep = [int(c) for j, c in enumerate(seq) if c != 0 and (j == 0 or c != seq[j - 1])]
            out.append(tuple(keep))
        return out

    def __call__(self, run) -> float:
        got = self.decode(run({"x": self.x})[0])
        return float(np.mean([a == b for a, b in zip(got, self.ref, strict=True)]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--root", type=Path, required=True, help="folder holding rapidocr_onnxruntime/models")
    p.add_argument("--models", default="cls,rec")
    p.add_argument("--chips", type=int, default=3, help="search chips")
    p.add_argument("--verify-chips", type=int, default=8, help="fresh chips per verification round")
    p.add_argument("--skip-sensitivity", action="store_true", help="only the placement (it measures its own)")
    p.add_argument("--eval-chips", type=int, default=5, help="chips of the before/after curves")
    p.add_argument("--budget", type=float, default=0.02)
    p.add_argument("--lines", type=int, default=0, help="text lines per metric (default: 64 cls, 16 rec)")
    p.add_argument("--times", default="1s,1d", help="times of the sensitivity study")
    p.add_argument("--rec-width", type=int, default=320, help="rec: line width (px)")
    p.add_argument("--rec-words", type=int, default=3, help="rec: at most this many words per line")
    args = p.parse_args()
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from anacompile.compiler import compile_model
    from anacompile.evaluate.monte_carlo import evaluate
    from anacompile.placement.plot import plot_sensitivity
    from anacompile.placement.search import place
    from anacompile.placement.sensitivity import sensitivity

    OUT.mkdir(parents=True, exist_ok=True)
    files = {"cls": "ch_ppocr_mobile_v2.0_cls_infer.onnx", "rec": "ch_PP-OCRv4_rec_infer.onnx"}
    rows = []
    for name in args.models.split(","):
        src = args.root / "rapidocr_onnxruntime" / "models" / files[name]
        if name == "cls":
            metric = DirectionAccuracy(args.lines or 64)
        else:
            metric = CharAgreement(src, args.lines or 16, args.rec_width, args.rec_words)
        calib_path = OUT / f"{name}.calibration.npz"
        np.savez(calib_path, x=metric.x[:8])
        cal = str(calib_path)
        t_sens = 0.0
        if not args.skip_sensitivity:
            t0 = time.perf_counter()
            sens = sensitivity(src, metric=metric, times=args.times, chips=args.chips, calibration=cal)
            t_sens = time.perf_counter() - t0
            sens.save_json(OUT / f"{name}.sensitivity.json")
            plot_sensitivity(sens, OUT / f"{name}.sensitivity.png")
        t0 = time.perf_counter()
        placed = place(
            src,
            OUT / f"{name}.analog.onnx",
            accuracy_budget=args.budget,
            at="1d",
            metric=metric,
            chips=args.chips,
            verify_chips=args.verify_chips,
            calibration=cal,
            placement_path=OUT / f"{name}.placement.json",
            plot=OUT / f"{name}.search.png",
            force=True,
        )
        t_place = time.perf_counter() - t0
        compile_model(src, OUT / f"{name}.all_analog.onnx", calibration=cal, force=True)
        kw = {"data": None, "times": "1s,1h,1d,1y", "chips": args.eval_chips, "seed": 100, "metric": metric}
        before = evaluate(OUT / f"{name}.all_analog.onnx", **kw)
        after = evaluate(placed.output, **kw)
        row = {
            "model": name,
            "baseline": placed.baseline,
            "analog_layers": len(placed.ranking),
            "top": [(n, round(placed.layer_loss.get(n, 0.0), 4)) for n in placed.ranking[:8]],
            "digital": placed.digital,
            "layer_strategies": placed.layer_strategies,
            "analog_mac_share": placed.analog_mac_share,
            "devices": placed.devices,
            "verified": [placed.verified_mean, placed.verified_std],
            "verified_se": placed.verified_se,
            "verified_lcb": placed.verified_lcb,
            "target": placed.target,
            "granularity": placed.granularity,
            "rounds": [(r.seed, round(r.mean, 4), round(r.se, 4), round(r.lcb, 4), r.passed) for r in placed.rounds],
            "meets": placed.meets_budget,
            "evaluations": placed.evaluations,
            "sensitivity_s": round(t_sens),
            "placement_s": round(t_place),
            "before": [before.accuracy_mean, before.accuracy_std],
            "after": [after.accuracy_mean, after.accuracy_std],
            "notes": placed.notes,
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
        (OUT / "study.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
