"""Write the package data of ``refmodel demo``, so the demo needs neither scikit-learn nor training.

* ``refmodel/data/digits_demo.npz``: ``x_test`` (500, 8, 8) uint8 pixels 0..16 and ``y_test``
  (500,) uint8 labels — the held-out split of ``train.load_split`` —, and ``x_calib`` /
  ``y_calib``: the first 200 training images (the normalization's calibration set);
* ``refmodel/data/digits_cnn.npz``: a byte copy of the committed model ``digits_cnn.npz``.

    python examples/digits/export_demo_data.py     # needs scikit-learn (development only)
"""

from __future__ import annotations

import pathlib
import shutil
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from train import OUT as MODEL  # noqa: E402
from train import load_split  # noqa: E402

DATA = HERE.parents[1] / "refmodel" / "data"
N_CALIB = 200


def pixels(x):
    """Pixel values 0..16 (uint8) of inputs ``pixel / 16``, checked to be exact."""
    codes = np.rint(x[:, 0] * 16)
    if not np.array_equal(codes / 16, x[:, 0]):
        raise ValueError("digits inputs are not multiples of 1/16")
    return codes.astype(np.uint8)


def main():
    x_train, y_train, x_test, y_test = load_split()
    DATA.mkdir(exist_ok=True)
    out = DATA / "digits_demo.npz"
    np.savez_compressed(
        out,
        x_test=pixels(x_test), y_test=y_test.astype(np.uint8),
        x_calib=pixels(x_train[:N_CALIB]), y_calib=y_train[:N_CALIB].astype(np.uint8),
    )  # fmt: skip
    shutil.copyfile(MODEL, DATA / MODEL.name)
    print(f"wrote {out} ({out.stat().st_size} bytes) and {DATA / MODEL.name}")


if __name__ == "__main__":
    main()
