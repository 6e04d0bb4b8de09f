"""The golden regression set: regenerating every recipe in vectors/recipes gives the arrays
of its committed vector file in vectors/golden, bit for bit, and the cost figures and the
coverage it stores (its ``cost`` and ``coverage`` groups, which compare_files does not compare).

After a deliberate change of the arithmetic (or of a cost formula), regenerate with
    refmodel gen vectors/recipes/NAME.toml --out vectors/golden/NAME.h5
and say why in the commit message.
"""

from pathlib import Path

import pytest

from refmodel.generate import generate
from refmodel.spec import load_spec
from refmodel.vectors import VectorFile, compare_files

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
RECIPES = sorted(p.stem for p in (VECTORS / "recipes").glob("*.toml"))


def test_every_recipe_has_a_golden_file():
    assert RECIPES and RECIPES == sorted(p.stem for p in (VECTORS / "golden").glob("*.h5"))


@pytest.mark.parametrize("name", RECIPES)
def test_regenerating_a_recipe_gives_its_golden_arrays_and_cost(name, tmp_path):
    out = tmp_path / f"{name}.h5"
    generate(load_spec(VECTORS / "recipes" / f"{name}.toml"), out)
    comparison = compare_files(VECTORS / "golden" / f"{name}.h5", out)
    assert comparison.equal, comparison.report()
    with VectorFile(out) as fresh, VectorFile(VECTORS / "golden" / f"{name}.h5") as golden:
        assert fresh.config_sha256 == golden.config_sha256
        stored = golden.cost()
        assert set(stored) == {"static", "memory", "measured"}, stored.keys()
        assert fresh.cost() == stored
        mine, theirs = fresh.coverage(), golden.coverage()
        assert list(mine.layers) == list(theirs.layers)
        for layer, cov in theirs.layers.items():
            assert cov.kind == mine.layers[layer].kind and cov.unreachable == mine.layers[layer].unreachable, layer
            fresh_hits = {b: h.tolist() for b, h in mine.layers[layer].hits.items()}
            assert {b: h.tolist() for b, h in cov.hits.items()} == fresh_hits, layer
