"""Placement on a real voice-activity LSTM: silero-vad's ``silero_vad.onnx`` (5.1.2; its STFT conv, encoder
convs, LSTM and decoder live inside the If branches on the sample rate), with a user's streaming ROC-AUC
metric as a callable.

Get the files (no network at run time afterwards)::

    pip download --no-deps silero-vad==5.1.2 pysptk==1.0.1 -d /tmp/whl
    unzip -o /tmp/whl/silero_vad-5.1.2-*.whl -d /tmp/vad
    tar xzf /tmp/whl/pysptk-1.0.1.tar.gz -C /tmp/vad pysptk-1.0.1/pysptk/example_audio_data/arctic_a0007.wav
    python bench/placement_vad.py --model /tmp/vad/silero_vad/data/silero_vad.onnx \
        --wav /tmp/vad/pysptk-1.0.1/pysptk/example_audio_data/arctic_a0007.wav

Data: real speech, CMU ARCTIC's ``arctic_a0007.wav`` (16 kHz, 4 s, shipped in pysptk as its example),
laid into a stream with silences and a second, quieter copy, under white noise at a fixed seed (SNR 20 dB
against the loud copy). Labels per 32 ms chunk (512 samples): speech where the clean speech's chunk energy is
within 30 dB of its loudest chunk. The model runs as silero's own wrapper drives it: one chunk per run with
64 samples of context, its state (2, 1, 128) carried from run to run, ``sr`` a 0-d int64. Metric: ROC AUC
of the speech probabilities against the labels (scikit-learn).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "placement_vad"
CHUNK, CONTEXT, SR = 512, 64, 16000


def speech_stream(wav: Path, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(chunks (n, 1, 576) float32 with context, labels (n,)) of the stream described in the module docstring."""
    from scipy.io import wavfile

    rate, x = wavfile.read(wav)
    if rate != SR:
        raise SystemExit(f"{wav}: {rate} Hz; this study needs 16 kHz speech")
    s = x.astype(np.float32) / 32768.0
    gap = lambda sec: np.zeros(int(sec * SR), np.float32)  # noqa: E731
    clean = np.concatenate([gap(0.6), s, gap(0.8), 0.3 * s, gap(0.6)])
    rng = np.random.default_rng(seed)
    noise_rms = np.sqrt(np.mean(s**2)) / 10.0  # 20 dB below the loud copy
    noisy = clean + noise_rms * rng.standard_normal(clean.size).astype(np.float32)
    n = clean.size // CHUNK
    energy = (clean[: n * CHUNK].reshape(n, CHUNK) ** 2).mean(axis=1)
    labels = (energy > energy.max() * 1e-3).astype(np.int64)
    padded = np.concatenate([np.zeros(CONTEXT, np.float32), noisy[: n * CHUNK]])
    chunks = np.stack([padded[i * CHUNK : i * CHUNK + CHUNK + CONTEXT] for i in range(n)])[:, None, :]
    return chunks.astype(np.float32), labels


class StreamAuc:
    """The user's metric: ROC AUC of the streamed speech probabilities (state carried between chunks)."""

    def __init__(self, chunks: np.ndarray, labels: np.ndarray) -> None:
        self.chunks, self.labels = chunks, labels
        self.__name__ = "stream_auc"

    def probabilities(self, run) -> tuple[np.ndarray, list[dict]]:
        state, probs, feeds = np.zeros((2, 1, 128), np.float32), [], []
        for x in self.chunks:
            feed = {"input": x, "state": state, "sr": np.array(SR, np.int64)}
            feeds.append(feed)
            out, state = run(feed)
            probs.append(float(np.asarray(out).ravel()[0]))
        return np.asarray(probs), feeds

    def __call__(self, run) -> float:
        from sklearn.metrics import roc_auc_score

        return float(roc_auc_score(self.labels, self.probabilities(run)[0]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--wav", type=Path, required=True)
    p.add_argument("--chips", type=int, default=3)
    p.add_argument("--verify-chips", type=int, default=8)
    p.add_argument("--eval-chips", type=int, default=5)
    p.add_argument("--budget", type=float, default=0.02)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import onnxruntime as ort

    from anacompile.compiler import compile_model
    from anacompile.evaluate.monte_carlo import evaluate
    from anacompile.placement.search import place

    OUT.mkdir(parents=True, exist_ok=True)
    chunks, labels = speech_stream(args.wav)
    metric = StreamAuc(chunks, labels)
    fp32 = ort.InferenceSession(str(args.model))
    _, feeds = metric.probabilities(lambda f: fp32.run(None, f))
    # calibration: the .npz form, whole inputs stacked along a sample axis (every 4th chunk, FP32 states)
    cal = OUT / "vad.calibration.npz"
    pick = feeds[::4][:64]
    np.savez(
        cal,
        input=np.stack([f["input"] for f in pick]),
        state=np.stack([f["state"] for f in pick]),
        sr=np.full(len(pick), SR, np.int64),
    )
    t0 = time.perf_counter()
    placed = place(
        args.model,
        OUT / "vad.analog.onnx",
        accuracy_budget=args.budget,
        at="1d",
        metric=metric,
        chips=args.chips,
        verify_chips=args.verify_chips,
        calibration=str(cal),
        placement_path=OUT / "vad.placement.json",
        plot=OUT / "vad.search.png",
        force=True,
    )
    t_place = time.perf_counter() - t0
    compile_model(args.model, OUT / "vad.all_analog.onnx", calibration=str(cal), force=True)
    kw = {"data": None, "times": "1s,1h,1d,1y", "chips": args.eval_chips, "seed": 100, "metric": metric}
    before = evaluate(OUT / "vad.all_analog.onnx", **kw)
    after = evaluate(placed.output, **kw)
    row = {
        "model": str(args.model),
        "chunks": int(len(labels)),
        "speech_share": float(labels.mean()),
        "baseline": placed.baseline,
        "analog_layers": len(placed.ranking),
        "top": [(n, round(placed.layer_loss.get(n, 0.0), 4)) for n in placed.ranking[:6]],
        "digital": placed.digital,
        "layer_strategies": placed.layer_strategies,
        "analog_mac_share": placed.analog_mac_share,
        "devices": placed.devices,
        "verified": [placed.verified_mean, placed.verified_std],
        "verified_se": placed.verified_se,
        "verified_lcb": placed.verified_lcb,
        "target": placed.target,
        "meets": placed.meets_budget,
        "rounds": [(r.seed, round(r.mean, 4), round(r.se, 4), round(r.lcb, 4), r.passed) for r in placed.rounds],
        "evaluations": placed.evaluations,
        "placement_s": round(t_place),
        "before": [before.accuracy_mean, before.accuracy_std],
        "after": [after.accuracy_mean, after.accuracy_std],
        "notes": placed.notes,
    }
    print(json.dumps(row), flush=True)
    (OUT / "study.json").write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
