"""Write the integer arrays of the recipes here (run once; the .npz files are committed).

    python vectors/recipes/make_arrays.py
"""

from pathlib import Path

import numpy as np

HERE = Path(__file__).parent


def codes(rng, lo, hi, shape):
    return rng.integers(lo, hi + 1, shape, dtype=np.int64)


def main():
    rng = np.random.default_rng(2026)
    arrays = {
        "conv_if_vmpool": {
            "conv1.weight": codes(rng, -40, 40, (4, 1, 3, 3)),
            "conv1.bias": codes(rng, -8, 8, (4,)),
            "fc.weight": codes(rng, -60, 60, (3, 64)),
        },
        "dt_t1": {
            "conv1.weight": codes(rng, -40, 40, (3, 2, 3, 3)),
            "fc.weight": codes(rng, -60, 60, (4, 6 * 6 * 6)),
        },
        "loihi_lif": {"fc.weight": codes(rng, -120, 120, (5, 12))},
        "count_gate": {
            "conv1.weight": codes(rng, -3, 3, (4, 2, 3, 3)),
            "fc.weight": codes(rng, -60, 60, (3, 36)),
        },
        "resnet_block": {
            "conv0.weight": codes(rng, -20, 20, (4, 2, 3, 3)),
            "conv1a.weight": codes(rng, -20, 20, (4, 4, 3, 3)),
            "conv1b.weight": codes(rng, -20, 20, (4, 4, 3, 3)),
            "skip1.weight": 16 * np.eye(4, dtype=np.int64).reshape(4, 4, 1, 1),  # identity shortcut
            "conv2a.weight": codes(rng, -20, 20, (8, 4, 3, 3)),
            "conv2b.weight": codes(rng, -20, 20, (8, 8, 3, 3)),
            "proj2.weight": codes(rng, -20, 20, (8, 4, 1, 1)),
            "fc.weight": codes(rng, -30, 30, (3, 72)),
        },
        "concat_branches": {
            "left.weight": codes(rng, -4, 4, (3, 1, 3, 3)),
            "right.weight": codes(rng, -4, 4, (2, 1, 1, 1)),
            "fc.weight": codes(rng, -30, 30, (3, 45)),
        },
    }
    for name, content in arrays.items():
        if not (HERE / f"{name}.npz").exists():  # (a rewrite would change the bytes of the zip, not the values)
            np.savez_compressed(HERE / f"{name}.npz", **content)


if __name__ == "__main__":
    main()
