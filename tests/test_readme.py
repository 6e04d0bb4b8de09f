"""The README's Python example runs as written, and its two set-up commands are the ones CI runs."""

import re
from pathlib import Path

import numpy as np

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_python_example_runs():
    (block,) = re.findall(r"```python\n(.*?)```", README, re.S)
    scope = {}
    exec(block, scope)
    result = scope["result"]
    assert result.traces[("if1", "v_pre")].shape == (16, 2, 4, 8, 8)
    assert result.prediction().shape == (2,)
    assert np.array_equal(result.prediction(), np.argmax(result.outputs["v"], axis=1))


def test_exactly_two_setup_commands_are_marked_for_ci():
    assert README.count("<!-- ci:install -->") == 1 and README.count("<!-- ci:test -->") == 1
    assert "refmodel demo" in README.split("<!-- ci:install -->")[1].split("```")[1]
    assert "pytest" in README.split("<!-- ci:test -->")[1].split("```")[1]
