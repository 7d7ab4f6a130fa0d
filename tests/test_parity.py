"""Parity with the official implementations: every fixture under <fixtures>/parity with a meta.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import fixtures_root
from parity_harness import parity_family
from trackers.models.checkpoints import load_weights


def _fixture_dirs() -> list[Path]:
    root = fixtures_root() / "parity"
    return sorted(d for d in root.iterdir() if (d / "meta.json").is_file()) if root.is_dir() else []


@pytest.fixture(autouse=True)
def _exact_float32():
    """Fixtures were produced in float32 without TF32."""
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = previous


def test_parity_fixtures_exist():
    assert _fixture_dirs(), f"no parity fixtures found under {fixtures_root() / 'parity'}; set DISTILTRACK_FIXTURES"


@pytest.mark.parametrize("fixture", _fixture_dirs(), ids=lambda d: d.name)
def test_parity(fixture: Path):
    meta = json.loads((fixture / "meta.json").read_text())
    family = parity_family(meta["family"])  # an unknown family name fails here
    if family is None:
        pytest.skip(f"family {meta['family']!r} is intentionally unregistered (parity_harness.UNREGISTERED_FAMILIES)")
    model = family.build(meta)
    load_weights(model, fixture / meta["checkpoint"]["file"])  # the converters follow the network's class
    model.eval()
    inputs = torch.load(fixture / "inputs.pt", map_location="cpu", weights_only=True)
    expected = torch.load(fixture / "outputs.pt", map_location="cpu", weights_only=True)
    with torch.no_grad():
        got = family.outputs(model, meta, inputs)

    for key, spec in meta["outputs"].items():
        assert key in got, f"{fixture.name}: model produced no {key!r}"
        if spec["compare"] == "set_per_row":
            assert got[key].shape == expected[key].shape, f"{fixture.name}/{key}: {tuple(got[key].shape)}"
            for row, (a, b) in enumerate(zip(got[key], expected[key])):
                assert set(a.tolist()) == set(b.tolist()), f"{fixture.name}/{key}: row {row} differs"
        else:
            torch.testing.assert_close(
                got[key].float(), expected[key], atol=spec["atol"], rtol=spec["rtol"], msg=lambda m: f"{fixture.name}/{key}: {m}"
            )


def test_unknown_fixture_family_fails_instead_of_skipping():
    """Only the allow-listed families skip; a misspelt family name must fail loudly."""
    assert parity_family("compresstracker_train") is None
    with pytest.raises(KeyError, match="UNREGISTERED_FAMILIES"):
        parity_family("ostrak")
