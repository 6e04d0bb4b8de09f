"""Train a dual-threshold spiking CNN (DT-SCNN) and its conventional baseline for ``refmodel demo dtscnn``.

The networks (Lei, Yang, Liu, Dou, Wu 2024, "DT-SCNN", as its public code defines them): 3x3
convolutions with padding 1 and no biases; per timestep t every conv neuron does::

    V = 0.5 * V * (1 - s1) + conv(x_t)     leak x0.5, hard reset where s1 fired (V starts at 0)
    s1 = V > theta1,  s2 = V > theta2       DT layer: one V map, two learned thresholds per layer,
    out = [s1, s2]                          C Vm channels -> 2C spike channels
    s = V > theta;  out = s                 baseline layer: 2C Vm channels, one learned threshold

the analog image enters conv1 unchanged every timestep, 2x2 average pooling follows each conv
layer, and the readout (a linear layer, no bias) does not spike: it accumulates its membrane,
``logits = (1/T) * sum_t fc(x_t)``.  Spikes are trained through a rectangular surrogate gradient
(``d s / d V = 1`` where ``|V - theta| < 0.5``, else 0; ``d s / d theta = -d s / d V``), as in
the STBP code DT-SCNN builds on.  Two stages, as the paper: train at T = 5, then fine-tune at
T = 1 (the operating point).

    DT-SCNN   conv1 1->8  DT (16 spike ch) avgpool2 | conv2 16->16 DT (32 spike ch) avgpool2 | fc 128->10
    baseline  conv1 1->16    (16 spike ch) avgpool2 | conv2 16->32    (32 spike ch) avgpool2 | fc 128->10

so every conv layer of the DT network has half the output channels (half the weights, Vms and
MACs) and the same input channels.

Data: scikit-learn's digits with the conversion demo's split (``examples/digits/train.py``:
``default_rng(0).permutation(1797)``, 1,297 train, 500 test, x = pixel / 16), or any dataset
of the same form given as ``--data FILE.npz`` (``x_train``, ``y_train``, ``x_test``, ``y_test``;
x in [0, 1] of shape (N, H, W) or (N, C, H, W), H and W divisible by 4; y integer labels).

Trains both networks for each seed (PyTorch, CPU, one thread, deterministic), prints the float
test accuracy at T = 1 of every seed and their mean and spread, and writes the first seed's
networks as ``refmodel.ann`` files (``dtscnn_dt.npz``, ``dtscnn_baseline.npz``; the T = 1
network: conv, dual_threshold / threshold, avgpool, ..., linear).  With the default data they go
to ``refmodel/data`` (what ``refmodel demo dtscnn`` reads).

    nice -n 19 .venv/bin/python examples/dtscnn/train.py            # the dev extra: torch, scikit-learn
    .venv/bin/python examples/dtscnn/train.py --data mnist.npz --out /tmp/mnist --seeds 0
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from refmodel import ann as annlib  # noqa: E402

DATA_DIR = ROOT / "refmodel" / "data"
FILES = {"dt": "dtscnn_dt.npz", "baseline": "dtscnn_baseline.npz"}
#: Conv Vm channels per layer: the DT network's C, the baseline's 2C.
CHANNELS = {"dt": (8, 16), "baseline": (16, 32)}
THETA_INIT = {"dt": (0.5, 1.0), "baseline": (0.5,)}
#: The two stages: (timesteps, epochs, peak learning rate), Adam with a cosine-decayed step.
STAGES = ((5, 40, 2e-3), (1, 20, 5e-4))
BATCH, SEEDS, LEAK, SURROGATE_HALF_WIDTH = 32, (0, 1, 2, 3, 4), 0.5, 0.5


def load_digits_split():
    """The conversion demo's split of scikit-learn's digits (``examples/digits/train.py``)."""
    spec = importlib.util.spec_from_file_location("digits_train", ROOT / "examples" / "digits" / "train.py")
    digits = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(digits)
    return digits.load_split()


def load_npz(path):
    """``(x_train, y_train, x_test, y_test)`` of an .npz; x as (N, C, H, W) float64."""
    with np.load(path) as data:
        arrays = [data[key] for key in ("x_train", "y_train", "x_test", "y_test")]
    for i in (0, 2):
        x = arrays[i].astype(np.float64)
        arrays[i] = x[:, None] if x.ndim == 3 else x
        if arrays[i].ndim != 4 or arrays[i].shape[2] % 4 or arrays[i].shape[3] % 4:
            raise SystemExit(f"{path}: x must be (N, H, W) or (N, C, H, W) with H, W divisible by 4")
        if arrays[i].min() < 0 or arrays[i].max() > 1:
            raise SystemExit(f"{path}: x must lie in [0, 1]")
    return arrays[0], arrays[1].astype(np.int64), arrays[2], arrays[3].astype(np.int64)


# --------------------------------------------------------------------------- the spiking network
class Spike(torch.autograd.Function):
    """``s = V > theta`` (strict); backward: the rectangle ``|V - theta| < 0.5`` for V, its negative for theta."""

    @staticmethod
    def forward(ctx, v, theta):
        ctx.save_for_backward(v, theta)
        return (v > theta).to(v.dtype)

    @staticmethod
    def backward(ctx, grad):
        v, theta = ctx.saved_tensors
        g = grad * ((v - theta).abs() < SURROGATE_HALF_WIDTH).to(grad.dtype)
        return g, -g.sum().reshape(theta.shape)


class SpikingConv(torch.nn.Module):
    """A 3x3 conv (pad 1, no bias) and its neurons: one V map, one threshold per entry of
    ``thetas`` (a scalar each, learned); the output is the spike maps concatenated on channels."""

    def __init__(self, c_in, c_out, thetas):
        super().__init__()
        self.conv = torch.nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.thetas = torch.nn.ParameterList([torch.nn.Parameter(torch.tensor(float(t))) for t in thetas])

    def forward(self, x, v, s1):
        v = LEAK * v * (1 - s1) + self.conv(x)
        spikes = [Spike.apply(v, theta) for theta in self.thetas]
        return torch.cat(spikes, dim=1), v, spikes[0]


class SCNN(torch.nn.Module):
    """conv | pool | conv | pool | fc readout; ``kind`` "dt" (two thresholds) or "baseline" (one)."""

    def __init__(self, kind, in_shape, n_classes):
        super().__init__()
        c, h, w = in_shape
        self.kind, self.in_shape = kind, tuple(in_shape)
        maps = len(THETA_INIT[kind])
        c1, c2 = CHANNELS[kind]
        self.conv1 = SpikingConv(c, c1, THETA_INIT[kind])
        self.conv2 = SpikingConv(maps * c1, c2, THETA_INIT[kind])
        self.fc = torch.nn.Linear(maps * c2 * (h // 4) * (w // 4), n_classes, bias=False)

    def forward(self, x, timesteps):
        state = [(0.0, 0.0), (0.0, 0.0)]
        logits = 0.0
        for _ in range(timesteps):
            h = x
            for i, conv in enumerate((self.conv1, self.conv2)):
                h, v, s1 = conv(h, *state[i])
                state[i] = (v, s1)
                h = F.avg_pool2d(h, 2)
            logits = logits + self.fc(h.flatten(1))
        return logits / timesteps


def to_ann(model: SCNN, meta: dict) -> annlib.ANN:
    """The network at T = 1 as a ``refmodel.ann`` ANN (float64): V = conv(x), so each conv layer is
    ``conv`` (zero bias) then ``dual_threshold`` / ``threshold``, then ``avgpool``."""
    layers = []
    for i, conv in enumerate((model.conv1, model.conv2), start=1):
        weight = conv.conv.weight.detach().double().numpy()
        thetas = [t.item() for t in conv.thetas]
        layers.append({"kind": "conv", "name": f"conv{i}", "weight": weight, "bias": np.zeros(len(weight)),
                       "padding": 1})  # fmt: skip
        if model.kind == "dt":
            layers.append({"kind": "dual_threshold", "name": f"dt{i}", "theta1": thetas[0], "theta2": thetas[1]})
        else:
            layers.append({"kind": "threshold", "name": f"th{i}", "theta": thetas[0]})
        layers.append({"kind": "avgpool", "name": f"pool{i}", "k": 2})
    weight = model.fc.weight.detach().double().numpy()
    layers += [{"kind": "flatten", "name": "flatten"},
               {"kind": "linear", "name": "fc", "weight": weight, "bias": np.zeros(len(weight))}]  # fmt: skip
    return annlib.ANN(model.in_shape, layers, meta)


def accuracy(net: annlib.ANN, x, y) -> float:
    """Float64 test accuracy of the T = 1 network (refmodel.ann's reference forward pass)."""
    return float((annlib.forward(net, x).argmax(axis=1) == y).mean())


# --------------------------------------------------------------------------- training
def train(kind, data, seed, stages=STAGES, batch=BATCH, log=print):
    """Train one network through ``stages`` ((T, epochs, lr), ...); returns it and the log
    ``[(T, epoch, mean loss), ...]``."""
    x_train, y_train = (torch.tensor(a) for a in data[:2])
    x_train = x_train.float()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = SCNN(kind, x_train.shape[1:], int(y_train.max()) + 1)
    history = []
    for timesteps, epochs, lr in stages:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        for epoch in range(epochs):
            for group in optimizer.param_groups:
                group["lr"] = lr * 0.5 * (1 + np.cos(np.pi * epoch / epochs))
            total = 0.0
            order = rng.permutation(len(x_train))
            for start in range(0, len(order), batch):
                idx = torch.from_numpy(order[start : start + batch])
                loss = F.cross_entropy(model(x_train[idx], timesteps), y_train[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item() * len(idx)
            history.append((timesteps, epoch, total / len(order)))
        log(f"  {kind} seed {seed}: T = {timesteps}, {epochs} epochs, final loss {history[-1][2]:.4f}")
    return model, history


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="an .npz with x_train, y_train, x_test, y_test (default: scikit-learn digits)")
    parser.add_argument("--out", help="directory for the first seed's networks (default refmodel/data for digits)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    args = parser.parse_args(argv)
    if args.data is None:
        data, dataset = load_digits_split(), "sklearn.datasets.load_digits, x = pixel / 16, split of examples/digits"
    else:
        data, dataset = load_npz(args.data), str(args.data)
    out = pathlib.Path(args.out) if args.out else (DATA_DIR if args.data is None else pathlib.Path("."))
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    results = {kind: [] for kind in FILES}
    first = {}
    start = time.perf_counter()
    for seed in args.seeds:
        for kind in FILES:
            model, _ = train(kind, data, seed)
            meta = {"dataset": dataset, "seed": seed, "trained_by": "examples/dtscnn/train.py",
                    "stages": [{"timesteps": t, "epochs": e, "lr": lr} for t, e, lr in STAGES],
                    "optimizer": "Adam, cosine-decayed step per stage", "batch": BATCH,
                    "leak": LEAK, "reset": "zero, where s1 fired", "surrogate": "rectangle |V - theta| < 0.5",
                    "readout": "linear, no bias, accumulated membrane / T"}  # fmt: skip
            net = to_ann(model, meta)
            results[kind].append(accuracy(net, data[2], data[3]))
            print(f"{kind} seed {seed}: float test accuracy at T = 1: {100 * results[kind][-1]:.1f} %")
            first.setdefault(kind, net)
    seconds = time.perf_counter() - start
    print(f"\nfloat test accuracy at T = 1 ({len(data[3])} images), seeds {args.seeds}, {seconds:.0f} s:")
    for kind, accs in results.items():
        accs = 100 * np.array(accs)
        print(f"  {kind:<9} mean {accs.mean():.2f} %, std {accs.std(ddof=1) if len(accs) > 1 else 0:.2f}, "
              f"min {accs.min():.1f}, max {accs.max():.1f}: {', '.join(f'{a:.1f}' for a in accs)}")  # fmt: skip
    diff = 100 * (np.array(results["dt"]) - np.array(results["baseline"]))
    print(f"  DT - baseline per seed (pp): {', '.join(f'{d:+.1f}' for d in diff)}; mean {diff.mean():+.2f}")
    out.mkdir(parents=True, exist_ok=True)
    for kind, net in first.items():
        net.meta["float_test_accuracy_t1"] = results[kind][0]
        net.meta["seeds_float_test_accuracy_t1"] = dict(zip(map(str, args.seeds), results[kind]))
        annlib.save(net, out / FILES[kind])
        print(f"wrote {out / FILES[kind]} (seed {args.seeds[0]})")


if __name__ == "__main__":
    main()
