"""Write small real model files with the real exporters, for refmodel's importer tests.

Trains, on the 8x8 handwritten digits refmodel ships (``refmodel/data/digits_demo.npz``), and
exports into ``examples/interop/fixtures/``:

* ``snntorch_digits.nir`` -- snnTorch 1.0 conv SNN (``snntorch.export_nir.export_to_nir``);
* ``sinabs_digits.nir``   -- sinabs 3.1 spiking conv net (``sinabs.to_nir``);
* ``digits_cnn.onnx``     -- plain CNN, Conv-BN-ReLU-pool x2, Flatten, Linear (``torch.onnx.export``);
* ``digits_cnn.dynamo.onnx`` -- the same CNN through torch's default (dynamo) exporter;
* ``digits_resnet.onnx``  -- small residual CNN (stem, identity block, stride-2 block with a 1x1
  projection, global average pool, Linear);

and for each ``<name>.reference.npz``: 50 fixed test images as fed (float32) and as pixels 0..16,
their labels, the framework's own outputs on them, and the float accuracy on the whole test split.

Data: the package data only (no download, no scikit-learn): the 200 images ``x_calib`` (the
first 200 images of the demo's fixed training split) are the training set, augmented by the 9
shifts of at most one pixel; the 500 images ``x_test`` (the demo's held-out split) are the test
set.  Inputs are ``pixel / 16`` in [0, 1], exactly as the conversion demo feeds them.

Development only; nothing here is a dependency of refmodel::

    pip install torch==2.13.0 && pip install -e '.[dev,interop]' onnxscript
    python examples/interop/make_fixtures.py            # all fixtures
    python examples/interop/make_fixtures.py snntorch   # or some of: snntorch sinabs cnn resnet

Deterministic: fixed seeds, one thread, ``torch.use_deterministic_algorithms(True)``, and the
``.npz`` files are written with fixed zip timestamps, so two runs on one machine give the same
bytes (see README.md for what the exporters themselves allow).
"""

from __future__ import annotations

import io
import json
import pathlib
import sys
import warnings
import zipfile

import numpy as np
import torch
from torch import nn

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DATA = ROOT / "refmodel" / "data" / "digits_demo.npz"
OUT = HERE / "fixtures"
N_REF = 50          # reference images: the first 50 of the test split
T_SNN = 8           # timesteps of both SNNs
SEED = 0

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


# --------------------------------------------------------------------------- helpers
def seed(s=SEED):
    torch.manual_seed(s)
    np.random.seed(s)


def load_data():
    """(x_train, y_train, x_test, y_test, px_test): x float32 (N, 1, 8, 8) = pixel/16."""
    d = np.load(DATA)
    px_train, y_train = d["x_calib"], d["y_calib"].astype(np.int64)
    px_test, y_test = d["x_test"], d["y_test"].astype(np.int64)
    # augmentation: the 9 shifts by at most one pixel (zeros shifted in)
    xs, ys = [], []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            s = np.zeros((len(px_train), 10, 10), np.uint8)
            s[:, 1 + dy : 9 + dy, 1 + dx : 9 + dx] = px_train
            xs.append(s[:, 1:9, 1:9])
            ys.append(y_train)
    px_aug = np.concatenate(xs)
    x_train = (px_aug[:, None] / np.float32(16)).astype(np.float32)
    x_test = (px_test[:, None] / np.float32(16)).astype(np.float32)
    return (torch.from_numpy(x_train), torch.from_numpy(np.concatenate(ys)),
            torch.from_numpy(x_test), torch.from_numpy(y_test), px_test)  # fmt: skip


def batches(n, size, gen):
    order = torch.randperm(n, generator=gen)
    for i in range(0, n, size):
        yield order[i : i + size]


def save_npz(path, **arrays):
    """np.savez_compressed with fixed zip timestamps (byte-reproducible)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name in sorted(arrays):
            b = io.BytesIO()
            np.lib.format.write_array(b, np.asarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, b.getvalue())
    path.write_bytes(buf.getvalue())


def write_nir(path, graph):
    """nir.write to a temporary name, then rename: a failed export leaves no file behind.

    The edges are sorted first: nirtorch collects them in a set, so the order the exporters
    give varies from run to run with Python's string hashing (PYTHONHASHSEED); NIR's edges
    are a set, and sorting them is the only change made to an exported graph."""
    import nir

    graph.edges = sorted(graph.edges)
    tmp = path.with_name(path.name + ".tmp")
    try:
        nir.write(tmp, graph)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def reference_inputs(x_test, y_test, px_test):
    return dict(
        x=x_test[:N_REF].numpy(),                      # float32 (50, 1, 8, 8), as fed
        pixels=px_test[:N_REF, None].astype(np.uint8),  # 0..16, x = pixels / 16 exactly
        labels=y_test[:N_REF].numpy().astype(np.int64),
        test_index=np.arange(N_REF, dtype=np.int64),    # rows of digits_demo.npz x_test
    )


def versions():
    import importlib.metadata as md

    out = {"python": sys.version.split()[0]}
    for p in ("torch", "numpy", "snntorch", "sinabs", "nir", "nirtorch", "onnx", "onnxruntime", "h5py"):
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            pass
    return out


def report(name, **kv):
    print(f"{name}: " + ", ".join(f"{k}={v}" for k, v in kv.items()), flush=True)


# --------------------------------------------------------------------------- snnTorch
def make_snntorch(data):
    import snntorch as snn
    from snntorch import surrogate, utils
    from snntorch.export_nir import export_to_nir

    x_train, y_train, x_test, y_test, px_test = data
    seed()
    beta = 0.875  # 1 - 2^-3: dt/tau = 2^-3, a leak hardware builds as a shift
    grad = surrogate.atan()
    # beta and threshold as per-neuron tensors of the layer's shape: with snnTorch's default
    # scalars, export_to_nir's own nir_graph.infer_types() raises "type mismatch: ...output:
    # [[8 8 8]] -> ...input: []" (a scalar LIF has input_type []) for any network, Linear-only too.
    def leaky(shape, **kw):
        return snn.Leaky(beta=torch.full(shape, beta), threshold=torch.ones(shape),
                         spike_grad=grad, init_hidden=True, **kw)  # fmt: skip

    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        leaky((8, 8, 8)),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 10),
        leaky((10,), output=True),
    )

    def run(x):
        """Constant current x every timestep; (spike counts, final membrane) (N, 10)."""
        utils.reset(net)
        count = 0
        for _ in range(T_SNN):
            spk, mem = net(x)
            count = count + spk
        return count, mem

    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    gen = torch.Generator().manual_seed(SEED)
    for epoch in range(8):
        for idx in batches(len(x_train), 64, gen):
            count, mem = run(x_train[idx])
            loss = nn.functional.cross_entropy(count, y_train[idx])  # rate-coded readout
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        count, mem = run(x_test)
    acc = float((count.argmax(1) == y_test).float().mean())

    path = OUT / "snntorch_digits.nir"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        # ignore_dims=[0]: without it the batch dimension enters the Input type and
        # infer_types fails on the Conv2d (IndexError in calculate_conv_output).
        graph = export_to_nir(net, x_test[:1], model_name="snntorch_digits", ignore_dims=[0])
    write_nir(path, graph)
    save_npz(
        OUT / "snntorch_digits.reference.npz",
        **reference_inputs(x_test, y_test, px_test),
        spike_counts=count[:N_REF].numpy().astype(np.int64),  # output spikes per class over T
        final_membrane=mem[:N_REF].numpy(),  # readout Leaky's mem after step T (before its reset)
        T=np.int64(T_SNN), dt=np.float64(1e-4), beta=np.float64(beta),
        test_accuracy=np.float64(acc),
        meta=json.dumps({"framework": "snntorch", "versions": versions(),
                         "input": "constant current x every timestep",
                         "reset": "subtract (snn.Leaky default), reset_delay=True",
                         "compare": "mem > threshold",
                         "accuracy": "argmax of output spike counts over the 500 test images"}),
    )  # fmt: skip
    report("snntorch", test_accuracy=f"{acc:.4f}", file=path.name)


# --------------------------------------------------------------------------- sinabs
def make_sinabs(data):
    import sinabs
    import sinabs.layers as sl
    from sinabs.activation import MembraneSubtract, SingleSpike

    x_train, y_train, x_test, y_test, px_test = data
    seed()

    def iaf():
        # SingleSpike (at most one spike per step, fires at v >= threshold) instead of sinabs'
        # default MultiSpike (floor(v / threshold) spikes per step): one-spike hardware.  The
        # NIR export writes neither (nor the reset): a default IAFSqueeze exports identically.
        return sl.IAFSqueeze(num_timesteps=T_SNN, spike_threshold=torch.tensor(1.0),
                             spike_fn=SingleSpike, reset_fn=MembraneSubtract(), min_v_mem=None)  # fmt: skip

    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        iaf(),
        sl.SumPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        iaf(),
        sl.SumPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 2 * 2, 10),
        iaf(),
    )

    def run(x):
        """Constant current x every timestep: input (N*T, 1, 8, 8), batch-major as IAFSqueeze
        expects; (spike counts (N, 10), readout v_mem after step T (after its reset))."""
        sinabs.reset_states(net)
        xt = x[:, None].expand(-1, T_SNN, -1, -1, -1).reshape(-1, *x.shape[1:])
        out = net(xt).reshape(len(x), T_SNN, -1)
        return out.sum(1), net[-1].v_mem.detach().clone()

    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(SEED)
    for epoch in range(12):
        for idx in batches(len(x_train), 64, gen):
            count, _ = run(x_train[idx])
            loss = nn.functional.cross_entropy(count, y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        count, vmem = run(x_test)
    acc = float((count.argmax(1) == y_test).float().mean())

    with torch.no_grad():
        run(x_test[:1])  # the exporter reads each IAF's shape from its v_mem state: batch 1
        sample = x_test[:1].expand(T_SNN, -1, -1, -1)
        graph = sinabs.to_nir(net, sample, model_name="sinabs_digits")
    # sinabs.to_nir leaves the Conv2d input_shape and the Flatten input_type None, and
    # nir.write then fails (h5py: "One of data, shape or dtype must be specified"); the
    # graph's own type inference (which snnTorch's exporter calls itself) fills them.
    graph.infer_types()
    path = OUT / "sinabs_digits.nir"
    write_nir(path, graph)
    save_npz(
        OUT / "sinabs_digits.reference.npz",
        **reference_inputs(x_test, y_test, px_test),
        spike_counts=count[:N_REF].numpy().astype(np.int64),
        final_membrane=vmem[:N_REF].numpy(),  # readout IAF v_mem after step T, after its reset
        T=np.int64(T_SNN), dt=np.float64(1.0),
        test_accuracy=np.float64(acc),
        meta=json.dumps({"framework": "sinabs", "versions": versions(),
                         "input": "constant current x every timestep",
                         "spike_fn": "SingleSpike: v >= threshold, at most one spike per step",
                         "reset": "MembraneSubtract (v -= threshold), min_v_mem None",
                         "dt": "IF r = 1: one unit per timestep (sinabs has no dt)",
                         "accuracy": "argmax of output spike counts over the 500 test images"}),
    )  # fmt: skip
    report("sinabs", test_accuracy=f"{acc:.4f}", file=path.name)


# --------------------------------------------------------------------------- ONNX
class ResNet(nn.Module):
    """Stem conv-BN-ReLU (8 ch, 8x8); identity block; stride-2 block (16 ch, 4x4) with a 1x1
    conv-BN projection shortcut; global average pool; Linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.b1 = nn.Sequential(
            nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
        )  # fmt: skip
        self.b2 = nn.Sequential(
            nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16),
        )  # fmt: skip
        self.b2_short = nn.Sequential(nn.Conv2d(8, 16, 1, stride=2, bias=False), nn.BatchNorm2d(16))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(self.b1(x) + x)
        x = torch.relu(self.b2(x) + self.b2_short(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def cnn():
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(16 * 2 * 2, 10),
    )  # fmt: skip


def export_onnx(net, path, dynamo=False):
    """The classic TorchScript exporter (dynamo=False), eval mode, no constant folding (so the
    BatchNormalization nodes stay), opset 17, batch axis dynamic."""
    x = torch.zeros(1, 1, 8, 8)
    tmp = path.with_name(path.name + ".tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(net, (x,), tmp, dynamo=True, optimize=True, verbose=False, external_data=False,
                              input_names=["input"], output_names=["logits"],
                              dynamic_shapes=({0: torch.export.Dim("N")},))  # fmt: skip
        else:
            torch.onnx.export(net, (x,), tmp, dynamo=False, export_params=True, opset_version=17,
                              do_constant_folding=False, training=torch.onnx.TrainingMode.EVAL,
                              input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})  # fmt: skip
    tmp.replace(path)


def make_onnx(data, name, net, epochs, lr, extra_dynamo=False):
    import onnx
    import onnxruntime as ort

    x_train, y_train, x_test, y_test, px_test = data
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    gen = torch.Generator().manual_seed(SEED)
    for epoch in range(epochs):
        net.train()
        for idx in batches(len(x_train), 64, gen):
            loss = nn.functional.cross_entropy(net(x_train[idx]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    net.eval()
    with torch.no_grad():
        logits = net(x_test)
    acc = float((logits.argmax(1) == y_test).float().mean())

    paths = [OUT / f"{name}.onnx"] + ([OUT / f"{name}.dynamo.onnx"] if extra_dynamo else [])
    ort_logits = {}
    for i, path in enumerate(paths):
        export_onnx(net, path, dynamo=i == 1)
        onnx.checker.check_model(onnx.load(path))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        out = sess.run(None, {"input": x_test.numpy()})[0]
        ort_logits[path.name] = out
        ort_acc = float((out.argmax(1) == y_test.numpy()).mean())
        report(name, test_accuracy=f"{acc:.4f}", onnxruntime_accuracy=f"{ort_acc:.4f}",
               max_abs_diff=f"{np.abs(out - logits.numpy()).max():.2e}", file=path.name)  # fmt: skip
    extra = {}
    if extra_dynamo:
        extra["ort_logits_dynamo"] = ort_logits[paths[1].name][:N_REF]
    save_npz(
        OUT / f"{name}.reference.npz",
        **reference_inputs(x_test, y_test, px_test),
        torch_logits=logits[:N_REF].numpy(),
        ort_logits=ort_logits[paths[0].name][:N_REF],
        **extra,
        test_accuracy=np.float64(acc),
        meta=json.dumps({"framework": "torch.onnx.export", "versions": versions(),
                         "exporter": "TorchScript (dynamo=False), opset 17, eval, "
                                     "do_constant_folding=False",
                         "accuracy": "float torch model, argmax of logits, 500 test images"}),
    )  # fmt: skip


def make_cnn(data):
    seed()
    make_onnx(data, "digits_cnn", cnn(), epochs=20, lr=3e-3, extra_dynamo=True)


def make_resnet(data):
    seed()
    make_onnx(data, "digits_resnet", ResNet(), epochs=20, lr=3e-3)


BUILDERS = {"snntorch": make_snntorch, "sinabs": make_sinabs, "cnn": make_cnn, "resnet": make_resnet}


def main(argv):
    names = argv or list(BUILDERS)
    OUT.mkdir(exist_ok=True)
    data = load_data()
    for n in names:
        BUILDERS[n](data)


if __name__ == "__main__":
    main(sys.argv[1:])
