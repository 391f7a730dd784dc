"""Real silero-vad files whose weights live inside If branches: compile, check, run, and the VAD's ROC AUC.

silero-vad's package requires torch, so it is not a test dependency; point this script at the model files of
an installed (or unpacked) ``silero-vad`` wheel (5.1.2: ``silero_vad.onnx``, ``silero_vad_half.onnx``; 6.2.3:
also ``silero_vad_op18_ifless.onnx``, ``silero_vad_16k_op15.onnx``, ...).

``check FILE...``: every file with the short form (``anacompile X.onnx --device pcm`` defaults), the full ONNX
checker, a stock onnxruntime run and an AnalogSession run at 1 s (both sample rates where the model takes
``sr``); then, on the first file with an ``sr`` input, every periphery option (iterative bound management,
abs-max and static input ranges, calibrated output ranges) with calibration feeds from the model's own inputs.

``auc FILE``: ROC AUC of the speech probabilities, streamed as silero's ``OnnxWrapper`` does (512-sample
chunks at 16 kHz with the previous 64 samples as context, state carried), on a synthetic speech/silence
signal with known labels (voiced segments: a jittered glottal pulse train at 90-220 Hz through three formant
resonators with syllabic amplitude modulation; pauses: a noise floor), and label-free against the FP32
model's own decisions (p > 0.5). Configs: all analog with the default periphery, and the LSTM layers kept
digital (``--digital``), at the given times over ``--chips`` chips.

    nice -n 10 env OMP_NUM_THREADS=1 python bench/vad_control_flow.py check /path/silero_vad/data/*.onnx
    nice -n 10 env OMP_NUM_THREADS=1 python bench/vad_control_flow.py auc /path/silero_vad.onnx --seconds 40
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from scipy import signal
from sklearn.metrics import roc_auc_score

from anacompile.compiler import compile_model
from anacompile.errors import AnacompileError
from anacompile.runtime.session import AnalogSession

SR, CHUNK, CONTEXT = 16000, 512, 64


def _ort(path):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    return lambda feeds: sess.run(None, {k: v for k, v in feeds.items() if k in names}), sess


def _state_inputs(sess) -> dict[str, np.ndarray]:
    out = {}
    for i in sess.get_inputs():
        if i.name in ("input", "sr", "t_inference"):
            continue
        dims = [d if isinstance(d, int) else 1 for d in i.shape]
        out[i.name] = np.zeros(dims, np.float32)
    return out


def stream(run, state0: dict[str, np.ndarray], audio: np.ndarray, has_sr: bool, chunk: int = CHUNK) -> np.ndarray:
    """Speech probability per chunk, the state and the 64-sample context carried as OnnxWrapper does."""
    state, context, probs = dict(state0), np.zeros(CONTEXT, np.float32), []
    names = list(state)
    for k in range(len(audio) // chunk):
        x = audio[k * chunk : (k + 1) * chunk]
        feeds = {"input": np.concatenate([context, x])[None].astype(np.float32), **state}
        if has_sr:
            feeds["sr"] = np.array(SR, np.int64)
        out = run(feeds)
        probs.append(float(np.asarray(out[0]).reshape(-1)[0]))
        state = dict(zip(names, out[1:], strict=False))
        context = x[-CONTEXT:]
    return np.asarray(probs)


def synthetic_speech(seconds: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A speech/silence signal at 16 kHz and its per-chunk labels (1: voiced)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    audio = rng.normal(0, 0.003, n)  # noise floor everywhere
    voiced = np.zeros(n, bool)
    t = 0
    while t < n:
        pause = int(rng.uniform(0.4, 1.5) * SR)
        talk = int(rng.uniform(0.6, 2.0) * SR)
        start, end = min(t + pause, n), min(t + pause + talk, n)
        if end > start:
            m = end - start
            f0 = rng.uniform(90, 220) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * np.arange(m) / SR))
            phase = np.cumsum(f0 * (1 + rng.normal(0, 0.01, m)) / SR)
            pulses = np.diff(np.floor(phase), prepend=0.0)  # one impulse per glottal period
            src = signal.lfilter([1.0], [1.0, -0.95], pulses)
            out = np.zeros(m)
            for _ in range(3):  # three formants, re-drawn per syllable-ish block
                f, bw = rng.uniform(300, 3000), rng.uniform(60, 200)
                r = np.exp(-np.pi * bw / SR)
                out += signal.lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * f / SR), r * r], src)
            syllable = 0.5 * (1 - np.cos(2 * np.pi * rng.uniform(3, 6) * np.arange(m) / SR))
            seg = out * (0.3 + 0.7 * syllable)
            audio[start:end] += 0.3 * seg / (np.abs(seg).max() + 1e-9)
            voiced[start:end] = True
        t = end
    chunks = len(audio) // CHUNK
    labels = voiced[: chunks * CHUNK].reshape(chunks, CHUNK).mean(1) > 0.5
    return audio.astype(np.float32), labels.astype(int)


def check(files: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        first_sr = None
        for k, path in enumerate(files):
            name = Path(path).name
            out = Path(tmp) / f"{k}_{name}.analog.onnx"
            t0 = time.perf_counter()
            try:
                report = compile_model(path, out, device="pcm")
            except AnacompileError as err:
                print(f"{name}: refused: {err}")
                continue
            seconds = time.perf_counter() - t0
            onnx.checker.check_model(str(out), full_check=True)
            run, sess = _ort(out)
            has_sr = any(i.name == "sr" for i in sess.get_inputs())
            state = _state_inputs(sess)
            x = np.random.default_rng(0).uniform(-0.5, 0.5, 8 * CHUNK).astype(np.float32)
            fixed = [d for d in sess.get_inputs()[0].shape if isinstance(d, int)]
            chunk = fixed[-1] - CONTEXT if len(fixed) == 2 else CHUNK
            p_ort = stream(run, state, x, has_sr, chunk)
            chip = AnalogSession(out, 0, t_inference=1.0)
            p_chip = stream(chip.run, state, x, has_sr, chunk)
            by_graph = sorted({row.graph or "(main)" for row in report.layers if row.analog})
            print(
                f"{name}: opset {onnx.load(path, load_external_data=False).opset_import[0].version}, "
                f"{report.totals['analog_layers']} analog / {report.totals['digital_layers']} digital layers, "
                f"{report.totals['tiles']} tiles, compiled in {seconds:.1f} s; full checker ok; stock ORT ok "
                f"(p {p_ort.min():.3f}..{p_ort.max():.3f}); session 1 s ok (p {p_chip.min():.3f}..{p_chip.max():.3f}); "
                f"{len(by_graph)} graph(s) hold layers"
            )
            if has_sr and first_sr is None:
                first_sr = path
        if first_sr is None:
            return
        _, sess = _ort(first_sr)
        state = _state_inputs(sess)
        audio, _ = synthetic_speech(3.0, seed=3)
        feeds = calibration_feeds(first_sr)
        for label, opts in (
            ("bound_management=iterative", {"periphery_overrides": ["bound_management=iterative"]}),
            ("input_range=absmax", {"periphery_overrides": ["input_range=absmax"]}),
            ("input_range=static", {"periphery_overrides": ["input_range=static"], "calibration": feeds}),
            ("calibrated output ranges", {"calibration": feeds}),
            (
                "iterative + static + calibrated",
                {"periphery_overrides": ["bound_management=iterative", "input_range=static"], "calibration": feeds},
            ),
        ):
            out = Path(tmp) / "opt.analog.onnx"
            report = compile_model(first_sr, out, device="pcm", force=True, **opts)
            onnx.checker.check_model(str(out), full_check=True)
            r_ort, _ = _ort(out)
            p1 = stream(r_ort, state, audio[: 16 * CHUNK], True)
            p2 = stream(AnalogSession(out, 0, t_inference=1.0).run, state, audio[: 16 * CHUNK], True)
            print(
                f"{Path(first_sr).name} {label}: {report.totals['analog_layers']} analog layers, checker ok, "
                f"stock ORT ok ({np.isfinite(p1).all()}), session ok ({np.isfinite(p2).all()}); notes: "
                f"{[n for n in report.notes if 'calibration' in n][:1]}"
            )


def calibration_feeds(path: str, seconds: float = 3.0) -> list[dict[str, np.ndarray]]:
    """The model's own inputs on another stretch of the synthetic signal, streamed with the state carried."""
    run, sess = _ort(path)
    state = _state_inputs(sess)
    has_sr = any(i.name == "sr" for i in sess.get_inputs())
    audio, _ = synthetic_speech(seconds, seed=3)
    feeds, st, context = [], dict(state), np.zeros(CONTEXT, np.float32)
    for k in range(len(audio) // CHUNK):
        x = audio[k * CHUNK : (k + 1) * CHUNK]
        f = {"input": np.concatenate([context, x])[None], **st, **({"sr": np.array(SR, np.int64)} if has_sr else {})}
        feeds.append(f)
        st = dict(zip(list(state), run(f)[1:], strict=False))
        context = x[-CONTEXT:]
    return feeds


def auc(path: str, seconds: float, chips: int, times: list[float], calibrate: bool = False) -> None:
    audio, labels = synthetic_speech(seconds)
    run, sess = _ort(path)
    has_sr = any(i.name == "sr" for i in sess.get_inputs())
    state = _state_inputs(sess)
    fp32 = stream(run, state, audio, has_sr)
    decisions = (fp32 > 0.5).astype(int)
    print(
        f"signal: {seconds:.0f} s synthetic speech/silence, {len(labels)} chunks, {labels.mean():.2f} voiced; "
        f"FP32 AUC {roc_auc_score(labels, fp32):.3f} (label-free: FP32 speech decisions {decisions.mean():.2f})"
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "vad.analog.onnx"
        options = {"calibration": calibration_feeds(path)} if calibrate else {}
        report = compile_model(path, out, device="pcm", **options)
        print("periphery:", "; ".join(n for n in report.notes if "range" in n))
        lstm = [row.name for row in report.layers if row.op == "LSTM" and row.analog]
        kept = Path(tmp) / "vad_lstm_digital.analog.onnx"
        compile_model(path, kept, device="pcm", digital=lstm, **options)
        for label, model in (("all analog, default periphery", out), (f"--digital {len(lstm)} LSTM layers", kept)):
            for t in times:
                scores, free = [], []
                for chip in range(chips):
                    p = stream(AnalogSession(model, chip, t_inference=t).run, state, audio, has_sr)
                    scores.append(roc_auc_score(labels, p))
                    free.append(roc_auc_score(decisions, p) if 0 < decisions.mean() < 1 else float("nan"))
                print(
                    f"{label}, t = {t:g} s: AUC {np.mean(scores):.3f} +- {np.std(scores):.3f} "
                    f"(chips {', '.join(f'{s:.3f}' for s in scores)}); vs FP32 decisions {np.mean(free):.3f} "
                    f"+- {np.std(free):.3f}",
                    flush=True,
                )


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check")
    c.add_argument("files", nargs="+")
    a = sub.add_parser("auc")
    a.add_argument("file")
    a.add_argument("--seconds", type=float, default=40.0)
    a.add_argument("--chips", type=int, default=3)
    a.add_argument("--times", default="1,86400")
    a.add_argument("--calibrate", action="store_true", help="calibrate on 3 s of another stretch of the signal")
    args = parser.parse_args()
    if args.command == "check":
        check(args.files)
    else:
        auc(args.file, args.seconds, args.chips, [float(t) for t in args.times.split(",")], args.calibrate)


if __name__ == "__main__":
    main()
