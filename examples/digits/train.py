"""Train the small digits CNN that the conversion demo turns into spiking hardware.

Data: scikit-learn's ``load_digits`` (1,797 real 8x8 images, pixel values 0..16, shipped inside
scikit-learn: no download).  Inputs are ``pixel / 16`` in [0, 1]; the split is a fixed
permutation (seed 0): 1,297 training and 500 test images.

Network (pure numpy, float64, im2col convolutions, Adam, deterministic)::

    conv1 1->8 3x3 pad 1, bn1, relu1, pool1 max 2   (8x8 -> 4x4)
    conv2 8->16 3x3 pad 1, bn2, relu2, pool2 max 2  (4x4 -> 2x2)
    flatten, fc 64->10

Batch-norm uses batch statistics while training; its stored ``mean``/``var`` are the exact
population statistics of the training set under the final weights.  Writes
``digits_cnn.npz`` next to this file (``refmodel.ann`` format) and prints the float accuracy.

    python examples/digits/train.py            # needs scikit-learn (development only)
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from refmodel import ann as annlib  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE / "digits_cnn.npz"
SEED, N_TRAIN = 0, 1297
EPOCHS, BATCH, LR, EPS = 30, 32, 3e-3, 1e-5


def load_split():
    """``(x_train, y_train, x_test, y_test)``: x (N, 1, 8, 8) float64 in [0, 1], y int labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = digits.images.astype(np.float64)[:, None] / 16.0
    order = np.random.default_rng(SEED).permutation(len(x))
    train, test = order[:N_TRAIN], order[N_TRAIN:]
    return x[train], digits.target[train], x[test], digits.target[test]


# --------------------------------------------------------------------------- layers
def conv_forward(x, w, b, pad):
    """Stride-1 conv as a matrix product: cols (N*H*W, C*kh*kw) @ W (C*kh*kw, K)."""
    n, _, h, wd = x.shape
    k = w.shape[0]
    cols = annlib.windows(x, w.shape[2:], 1, pad).transpose(0, 2, 3, 1, 4, 5).reshape(n * h * wd, -1)
    out = cols @ w.reshape(k, -1).T + b
    return out.reshape(n, h, wd, k).transpose(0, 3, 1, 2), cols


def conv_backward(dout, cols, x_shape, w, pad):
    """Gradients (dx, dW, db) of ``conv_forward``; dx by scattering the columns back (col2im)."""
    n, c, h, wd = x_shape
    k, _, kh, kw = w.shape
    d2 = dout.transpose(0, 2, 3, 1).reshape(-1, k)
    dw = (d2.T @ cols).reshape(w.shape)
    dcols = (d2 @ w.reshape(k, -1)).reshape(n, h, wd, c, kh, kw)
    dx = np.zeros((n, c, h + 2 * pad, wd + 2 * pad))
    for u in range(kh):
        for v in range(kw):
            dx[:, :, u : u + h, v : v + wd] += dcols[:, :, :, :, u, v].transpose(0, 3, 1, 2)
    return dx[:, :, pad : pad + h, pad : pad + wd], dw, d2.sum(axis=0)


def bn_forward(x, gamma, beta):
    """Training-mode batch-norm over (N, H, W); returns y and the cache for the backward pass."""
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    inv = 1.0 / np.sqrt(x.var(axis=(0, 2, 3), keepdims=True) + EPS)
    xhat = (x - mean) * inv
    return gamma[:, None, None] * xhat + beta[:, None, None], (xhat, inv)


def bn_backward(dy, cache, gamma):
    xhat, inv = cache
    m = dy.shape[0] * dy.shape[2] * dy.shape[3]
    dxhat = dy * gamma[:, None, None]
    dx = (
        inv
        / m
        * (
            m * dxhat
            - dxhat.sum(axis=(0, 2, 3), keepdims=True)
            - xhat * (dxhat * xhat).sum(axis=(0, 2, 3), keepdims=True)
        )
    )
    return dx, (dy * xhat).sum(axis=(0, 2, 3)), dy.sum(axis=(0, 2, 3))


def pool_forward(x):
    """2x2 max-pool, stride 2; the mask marks the first maximum of each window."""
    n, c, h, w = x.shape
    win = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
    arg = win.argmax(axis=-1)
    mask = np.arange(4) == arg[..., None]
    return win.max(axis=-1), mask


def pool_backward(dout, mask):
    n, c, h2, w2, _ = mask.shape
    dwin = mask * dout[..., None]
    return dwin.reshape(n, c, h2, w2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, 2 * h2, 2 * w2)


# --------------------------------------------------------------------------- model
def init_params(rng):
    """He-normal weights, zero biases, unit BN scales."""

    def he(*shape):
        return rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:]))

    return {
        "conv1.weight": he(8, 1, 3, 3), "conv1.bias": np.zeros(8),
        "bn1.gamma": np.ones(8), "bn1.beta": np.zeros(8),
        "conv2.weight": he(16, 8, 3, 3), "conv2.bias": np.zeros(16),
        "bn2.gamma": np.ones(16), "bn2.beta": np.zeros(16),
        "fc.weight": he(10, 64), "fc.bias": np.zeros(10),
    }  # fmt: skip


def loss_and_grads(p, x, y):
    """Softmax cross-entropy of a batch (training-mode BN) and its gradients."""
    grads, stack = {}, []
    h = x
    for i in (1, 2):
        a, cols = conv_forward(h, p[f"conv{i}.weight"], p[f"conv{i}.bias"], 1)
        z, bn_cache = bn_forward(a, p[f"bn{i}.gamma"], p[f"bn{i}.beta"])
        r = np.maximum(z, 0.0)
        h, mask = pool_forward(r)
        stack.append((cols, a.shape, bn_cache, z, mask, h.shape))
    flat = h.reshape(len(x), -1)
    logits = flat @ p["fc.weight"].T + p["fc.bias"]
    logits -= logits.max(axis=1, keepdims=True)
    prob = np.exp(logits)
    prob /= prob.sum(axis=1, keepdims=True)
    loss = -np.log(prob[np.arange(len(y)), y]).mean()
    dlogits = prob
    dlogits[np.arange(len(y)), y] -= 1.0
    dlogits /= len(y)
    grads["fc.weight"], grads["fc.bias"] = dlogits.T @ flat, dlogits.sum(axis=0)
    dh = (dlogits @ p["fc.weight"]).reshape(h.shape)
    for i in (2, 1):
        cols, a_shape, bn_cache, z, mask, _ = stack[i - 1]
        dz = pool_backward(dh, mask) * (z > 0)
        da, grads[f"bn{i}.gamma"], grads[f"bn{i}.beta"] = bn_backward(dz, bn_cache, p[f"bn{i}.gamma"])
        dh, grads[f"conv{i}.weight"], grads[f"conv{i}.bias"] = conv_backward(
            da, cols, (a_shape[0], p[f"conv{i}.weight"].shape[1], *a_shape[2:]), p[f"conv{i}.weight"], 1
        )
    return loss, grads


def to_ann(p, x_train):
    """The trained parameters as a ``refmodel.ann.ANN``; BN statistics from the whole training set."""
    layers = []
    h = x_train
    for i in (1, 2):
        conv = {
            "kind": "conv",
            "name": f"conv{i}",
            "weight": p[f"conv{i}.weight"],
            "bias": p[f"conv{i}.bias"],
            "stride": 1,
            "padding": 1,
        }
        a = annlib.forward(annlib.ANN(h.shape[1:], [conv]), h)
        bn = {"kind": "batchnorm", "name": f"bn{i}", "gamma": p[f"bn{i}.gamma"], "beta": p[f"bn{i}.beta"],
              "mean": a.mean(axis=(0, 2, 3)), "var": a.var(axis=(0, 2, 3)), "eps": EPS}  # fmt: skip
        block = [
            conv,
            bn,
            {"kind": "relu", "name": f"relu{i}"},
            {"kind": "maxpool", "name": f"pool{i}", "k": 2, "stride": 2},
        ]
        h = annlib.forward(annlib.ANN(h.shape[1:], block), h)
        layers += block
    layers += [
        {"kind": "flatten", "name": "flatten"},
        {"kind": "linear", "name": "fc", "weight": p["fc.weight"], "bias": p["fc.bias"]},
    ]
    return annlib.ANN((1, 8, 8), layers)


def accuracy(model, x, y):
    return float((annlib.forward(model, x).argmax(axis=1) == y).mean())


def train():
    x_train, y_train, x_test, y_test = load_split()
    rng = np.random.default_rng(SEED)
    p = init_params(rng)
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(v) for k, v in p.items()}
    step = 0
    for epoch in range(EPOCHS):
        order = rng.permutation(len(x_train))
        lr = LR * 0.5 * (1 + np.cos(np.pi * epoch / EPOCHS))  # cosine decay
        total = 0.0
        for start in range(0, len(order), BATCH):
            idx = order[start : start + BATCH]
            loss, grads = loss_and_grads(p, x_train[idx], y_train[idx])
            total += loss * len(idx)
            step += 1
            for k, g in grads.items():  # Adam (beta1 0.9, beta2 0.999)
                m[k] = 0.9 * m[k] + 0.1 * g
                v[k] = 0.999 * v[k] + 0.001 * g * g
                p[k] -= lr * (m[k] / (1 - 0.9**step)) / (np.sqrt(v[k] / (1 - 0.999**step)) + 1e-8)
        print(f"epoch {epoch + 1:2d}  loss {total / len(order):.4f}")
    model = to_ann(p, x_train)
    return model, accuracy(model, x_train, y_train), accuracy(model, x_test, y_test)


def main():
    model, train_acc, test_acc = train()
    model.meta = {
        "dataset": "sklearn.datasets.load_digits, x = pixel / 16",
        "split": {"seed": SEED, "n_train": N_TRAIN, "rule": "np.random.default_rng(seed).permutation(1797)"},
        "float_train_accuracy": train_acc,
        "float_test_accuracy": test_acc,
        "trained_by": "examples/digits/train.py",
    }
    annlib.save(model, OUT)
    print(
        f"float train accuracy {train_acc:.4f}, test accuracy {test_acc:.4f} ({len(load_split()[3])} images)"
    )
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
