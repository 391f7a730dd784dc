"""Hardware-aware fine-tuning study: analog accuracy at 1 s, 1 d, 1 y before and after ``anacompile finetune``.

    python bench/finetune.py                     # digits models and the OCR text-direction classifier
    python bench/finetune.py --part ocr --chips 10
    python bench/finetune.py --part digits --models lstm --chips 25

Part ``digits``: for each FP32 example model (models/digits_*_fp.onnx), the FP32 file, the same file after
``finetune`` with default settings (calibration = the digits training split, no labels) and the network trained
hardware-aware from scratch with labels (models/digits_*_hwa.onnx) are compiled with the default periphery and
evaluated on the digits test split (never seen in tuning), global drift compensation, N chips.

Part ``ocr``: a real FP32 model of another project, PaddleOCR's MobileNetV3 text-direction classifier
``ch_ppocr_mobile_v2.0_cls_infer.onnx`` as shipped by ``rapidocr-onnxruntime==1.4.4`` (install it with
``pip install --no-deps rapidocr-onnxruntime==1.4.4``; opset 11, weights as Constant nodes, converted to opset 17
as a user would before compiling). Inputs are text lines rendered with PIL from anacompile's sentence list, upright
(class 0) and rotated by 180 degrees (class 1), 48x192, PaddleOCR's normalisation; tuning uses lines from the first
35 sentences (inputs only), evaluation lines from the other 15 sentences, so no evaluated text was seen in tuning.

Prints one table and writes JSON (``--json``). Threads: torch and onnxruntime use ``--threads`` (default 1).
"""

from __future__ import annotations

import argparse
import json
import site
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anacompile.compiler import compile_model  # noqa: E402
from anacompile.evaluate.monte_carlo import evaluate  # noqa: E402
from anacompile.finetune import FinetuneConfig, finetune  # noqa: E402

TIMES = "1s,1d,1y"
OCR_PACKAGE = "rapidocr-onnxruntime==1.4.4"


def _eval(model: Path, data, tmp: Path, chips: int, threads: int, calibration) -> dict:
    out = tmp / (model.stem + ".analog.onnx")
    compile_model(model, out, calibration=calibration, force=True)
    r = evaluate(out, data=data, times=TIMES, chips=chips, compensation="global", threads=threads)
    return {
        "fp32": float(r.baseline),
        "mean": [float(v) for v in r.accuracy_mean],
        "std": [float(v) for v in r.accuracy_std],
    }


def run_digits(names: list[str], chips: int, threads: int, tmp: Path) -> list[dict]:
    rows = []
    for name in names:
        fp, hwa = ROOT / "models" / f"digits_{name}_fp.onnx", ROOT / "models" / f"digits_{name}_hwa.onnx"
        tuned = tmp / f"digits_{name}_tuned.onnx"
        t0 = time.perf_counter()
        res = finetune(fp, "digits", tuned, show_progress=False, threads=threads, force=True)
        seconds = time.perf_counter() - t0
        for label, path in (("fp32-trained", fp), ("fine-tuned", tuned), ("hwa from scratch", hwa)):
            row = {"model": f"digits {name}", "variant": label, **_eval(path, "digits", tmp, chips, threads, "digits")}
            if label == "fine-tuned":
                row.update(finetune_s=seconds, epochs=res.epochs_run, best_epoch=res.best_epoch)
            rows.append(row)
            _print_row(row)
    return rows


# ------------------------------------------------------------------------------------------------- OCR


def ocr_model_path() -> Path:
    for base in site.getsitepackages():
        p = Path(base) / "rapidocr_onnxruntime" / "models" / "ch_ppocr_mobile_v2.0_cls_infer.onnx"
        if p.is_file():
            return p
    raise SystemExit(f"the OCR classifier is not installed: pip install --no-deps {OCR_PACKAGE}")


def _fonts(size: int):
    from PIL import ImageFont

    found = sorted(Path("/usr/share/fonts").rglob("DejaVu*.ttf")) if Path("/usr/share/fonts").is_dir() else []
    fonts = [ImageFont.truetype(str(f), size) for f in found if "Math" not in f.name][:8]
    return fonts or [ImageFont.load_default(size=size)]


def render_lines(sentences: list[str], n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` text-line crops (N, 3, 48, 192) in PaddleOCR's input form, half upright (0), half rotated (1)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    fonts = {s: _fonts(s) for s in (22, 26, 30, 34)}
    xs, ys = [], []
    for i in range(n):
        words = sentences[rng.integers(len(sentences))].split()
        k = int(rng.integers(1, min(5, len(words)) + 1))
        start = int(rng.integers(0, len(words) - k + 1))
        text = " ".join(words[start : start + k])
        size = int(rng.choice(list(fonts)))
        font = fonts[size][int(rng.integers(len(fonts[size])))]
        bg, fg = int(rng.integers(170, 256)), int(rng.integers(0, 90))
        w = int(font.getlength(text)) + 12
        img = Image.new("L", (max(w, 40), 48), color=bg)
        ImageDraw.Draw(img).text((6, 24), text, fill=fg, font=font, anchor="lm")
        arr = np.asarray(img, np.float32) + rng.normal(0, 6, (48, img.width))
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
        label = i % 2
        if label:
            img = img.rotate(180)
        width = min(192, int(round(48 * img.width / 48)))
        img = img.resize((width, 48))
        x = np.zeros((3, 48, 192), np.float32)
        x[:, :, :width] = ((np.asarray(img, np.float32) / 255.0 - 0.5) / 0.5)[None]
        xs.append(x)
        ys.append(label)
    return np.stack(xs), np.asarray(ys, np.int64)


def run_ocr(chips: int, threads: int, tmp: Path, n_tune: int, n_eval: int, epochs: int) -> list[dict]:
    sentences = resources.files("anacompile.data").joinpath("sentences.txt").read_text().splitlines()
    sentences = [s for s in sentences if s.strip()]
    x_tune, _ = render_lines(sentences[:35], n_tune, seed=1)
    x_eval, y_eval = render_lines(sentences[35:], n_eval, seed=2)
    src = onnx.version_converter.convert_version(onnx.load(ocr_model_path()), 17)
    fp = tmp / "ppocr_cls_fp.onnx"
    onnx.save(src, fp)
    inp = src.graph.input[0].name
    np.savez(tmp / "ocr_tune.npz", **{inp: x_tune})
    np.savez(tmp / "ocr_eval.npz", **{inp: x_eval, "labels": y_eval})
    tuned = tmp / "ppocr_cls_tuned.onnx"
    t0 = time.perf_counter()
    cfg = FinetuneConfig(epochs=epochs)
    res = finetune(fp, tmp / "ocr_tune.npz", tuned, config=cfg, show_progress=False, threads=threads, force=True)
    seconds = time.perf_counter() - t0
    rows = []
    for label, path in (("fp32 (as shipped)", fp), ("fine-tuned", tuned)):
        row = {
            "model": "PP-OCR MobileNetV3 cls",
            "variant": label,
            **_eval(path, str(tmp / "ocr_eval.npz"), tmp, chips, threads, str(tmp / "ocr_tune.npz")),
        }
        if label == "fine-tuned":
            row.update(finetune_s=seconds, epochs=res.epochs_run, best_epoch=res.best_epoch)
        rows.append(row)
        _print_row(row)
    return rows


def _print_row(row: dict) -> None:
    acc = "  ".join(f"{100 * m:6.2f} +- {100 * s:4.2f}" for m, s in zip(row["mean"], row["std"], strict=True))
    extra = f"  ({row['finetune_s']:.0f} s, {row['epochs']} epochs)" if "finetune_s" in row else ""
    print(f"{row['model']:24s} {row['variant']:18s} FP32 {100 * row['fp32']:6.2f}  {acc}{extra}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=["digits", "ocr", "all"], default="all")
    p.add_argument("--models", default="mlp,cnn,lstm,transformer")
    p.add_argument("--chips", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ocr-tune", type=int, default=800)
    p.add_argument("--ocr-eval", type=int, default=400)
    p.add_argument("--ocr-epochs", type=int, default=30)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    print(f"accuracy (%) at {TIMES}, {args.chips} chips, global drift compensation; mean +- std over chips")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if args.part in ("digits", "all"):
            rows += run_digits(args.models.split(","), args.chips, args.threads, tmp)
        if args.part in ("ocr", "all"):
            rows += run_ocr(args.chips, args.threads, tmp, args.ocr_tune, args.ocr_eval, args.ocr_epochs)
    if args.json:
        args.json.write_text(json.dumps({"times": TIMES, "chips": args.chips, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
