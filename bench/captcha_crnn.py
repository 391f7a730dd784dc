"""captcha-whisperer's CNN + unrolled biLSTM CTC model on the chip: string accuracy over time, fixed vs calibrated
ADC ranges.

    python bench/captcha_crnn.py CAPTCHAS.npz [--chips 3] [--calibration 40]

CAPTCHAS.npz comes from bench/captcha_data.py. The first ``--calibration`` images calibrate the compiler (an
iterable of batch-1 feeds, as a user holding only inputs would), the rest are scored. The metric is a plain
function ``metric(run) -> float`` with ``run(feeds) -> list of outputs``, as a user writes it.
"""

from __future__ import annotations

import argparse
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from anacompile.compiler import compile_model
from anacompile.runtime.session import AnalogSession

LABELS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_"
BLANK = len(LABELS) - 1


def crnn_path() -> Path:
    """The model file inside the installed captcha-whisperer==0.1.0 package (read, never imported)."""
    return Path(sysconfig.get_paths()["purelib"]) / "captcha_whisperer" / "models" / "captcha_crnn.onnx"


def decode(logits: np.ndarray) -> list[str]:
    """captcha-whisperer's greedy CTC decode (recognizer.decode), on logits (T, N, C)."""
    texts = []
    for n in range(logits.shape[1]):
        out, prev = [], BLANK
        for t in range(1, 20):
            o = int(np.argmax(logits[t - 1, n, 1:]))
            if o != BLANK and prev != o:
                out.append(LABELS[o + 1])
            prev = o
        texts.append("".join(out).replace("_", "").strip())
    return texts


def string_accuracy(images: np.ndarray, labels: np.ndarray):
    """A metric: the share of images whose decoded string equals the label (batch-1 runs)."""

    def metric(run) -> float:
        hits = 0
        for x, label in zip(images, labels, strict=True):
            hits += decode(run({"image": x[None].astype(np.float32)})[0])[0] == str(label)
        return hits / len(labels)

    return metric


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--chips", type=int, default=3)
    ap.add_argument("--calibration", type=int, default=40)
    ap.add_argument("--times", default="1,3600,86400")
    ap.add_argument("--periphery", default="standard,calibrated")
    args = ap.parse_args()
    d = np.load(args.data)
    images, labels = d["image"], d["labels"]
    cal, test_x, test_y = images[: args.calibration], images[args.calibration :], labels[args.calibration :]
    metric = string_accuracy(test_x, test_y)
    fp = ort.InferenceSession(str(crnn_path()), providers=["CPUExecutionProvider"])
    print(f"FP32 string accuracy: {metric(lambda f: fp.run(None, f)):.3f} on {len(test_y)} images", flush=True)
    times = [float(t) for t in args.times.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        for periphery in args.periphery.split(","):
            out = Path(tmp) / f"{periphery}.onnx"
            t0 = time.perf_counter()
            report = compile_model(
                crnn_path(), out, periphery=periphery, calibration=[{"image": x[None].astype(np.float32)} for x in cal]
            )
            print(
                f"{periphery}: compiled in {time.perf_counter() - t0:.1f} s; {report.totals['weights_mapped']} "
                f"weights on {report.totals['tiles']} tiles; {report.notes[1]}",
                flush=True,
            )
            sess = AnalogSession(out, chip_seed=None)
            for t in times:
                accs = []
                for chip in range(args.chips):
                    sess.program(chip)
                    sess.set_time(t)
                    accs.append(metric(sess.run))
                print(f"  t={t:>8.0f} s: {np.mean(accs):.3f} +- {np.std(accs):.3f} over {args.chips} chips", flush=True)


if __name__ == "__main__":
    main()
