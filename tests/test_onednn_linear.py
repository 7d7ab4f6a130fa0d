"""The oneDNN fp32 Linear engine (``trackers.inference.onednn_linear``): the same map as ``nn.Linear``, chosen
by the CPU, applied by ``apply_runtime`` to a copy, counted by the flop counter and compared by `benchmark`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lightning_app import cli
from lightning_app.config_loading import build_model_from_configs
from trackers.errors import SetupError
from trackers.evaluation import speed
from trackers.inference import runtime
from trackers.inference.onednn_linear import OneDNNLinear, onednn_linear_available, onednn_linear_network
from trackers.inference.runtime import FP32_LINEAR_ENV, apply_runtime, check_runtime, fp32_linear_engine

ROOT = Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / "configs/presets/cpu_smoke.yaml")
OSTRACK_TINY = [str(ROOT / "configs/ostrack_256.yaml"), SMOKE, str(ROOT / "configs/presets/ostrack_tiny.yaml")]
needs_onednn = pytest.mark.skipif(not onednn_linear_available(), reason="torch built without oneDNN")


@needs_onednn
@pytest.mark.parametrize("shape", [(37, 96), (2, 37, 96), (2, 3, 5, 96), "transposed"])
@pytest.mark.parametrize("bias", [True, False])
def test_onednn_linear_is_the_same_map_as_nn_linear(shape, bias: bool) -> None:
    torch.manual_seed(0)
    linear = nn.Linear(96, 160, bias=bias)
    x = torch.randn(2, 96, 37).transpose(1, 2) if shape == "transposed" else torch.randn(shape)
    with torch.inference_mode():
        expected, got = linear(x), OneDNNLinear(linear)(x)
    assert got.shape == expected.shape and got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@needs_onednn
def test_the_network_copy_routes_every_plain_linear_and_leaves_the_original() -> None:
    network = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Sequential(nn.Linear(16, 4), nn.LayerNorm(4)))
    routed = onednn_linear_network(network)
    assert [type(m) for m in network.modules()].count(nn.Linear) == 2  # the original still trains
    assert [type(m) for m in routed.modules()].count(OneDNNLinear) == 2
    assert not any(type(m) is nn.Linear for m in routed.modules())
    x = torch.randn(3, 8)
    with torch.inference_mode():
        torch.testing.assert_close(routed(x), network(x), rtol=1e-5, atol=1e-6)


@needs_onednn
def test_a_routed_network_can_be_copied_again() -> None:
    """bf16 and int8 work on a deep copy; an opaque oneDNN weight has no storage, so the layer re-packs."""
    import copy

    routed = onednn_linear_network(nn.Sequential(nn.Linear(8, 16), nn.Linear(16, 4, bias=False)))
    again, x = copy.deepcopy(routed), torch.randn(3, 8)
    assert again[0].packed_weight is not routed[0].packed_weight
    with torch.inference_mode():
        torch.testing.assert_close(again(x), routed(x), rtol=0, atol=0)


@needs_onednn
def test_flops_do_not_depend_on_the_linear_engine() -> None:
    """Torch's counter has no formula for oneDNN's op; without ours it would count the Linear layers as 0."""
    linear, x = nn.Linear(64, 32), torch.randn(2, 10, 64)
    assert speed.count_flops(lambda: OneDNNLinear(linear)(x)) == speed.count_flops(lambda: linear(x)) == 2 * 20 * 64 * 32


@pytest.mark.parametrize(("vendor", "isa", "expected"), [
    ("AuthenticAMD", ["avx2", "avx512", "vnni", "avx512_bf16"], "onednn"),  # MKL leaves AVX-512 unused there
    ("AuthenticAMD", ["avx2"], "torch"),  # measured tied
    ("GenuineIntel", ["avx2", "avx512", "vnni", "amx_tile"], "torch"),
])
def test_the_engine_follows_the_cpu(monkeypatch: pytest.MonkeyPatch, vendor: str, isa: list[str],
                                    expected: str) -> None:
    monkeypatch.delenv(FP32_LINEAR_ENV, raising=False)
    monkeypatch.setattr(runtime, "cpu_vendor", lambda: vendor)
    monkeypatch.setattr(runtime, "cpu_isa", lambda: isa)
    monkeypatch.setattr(runtime, "onednn_linear_available", lambda: True)
    assert fp32_linear_engine() == expected
    monkeypatch.setattr(runtime, "onednn_linear_available", lambda: False)  # a build without oneDNN: torch's
    assert fp32_linear_engine() == "torch"


def test_cpuinfo_fields_are_read_by_name(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9R45\n\nprocessor\t: 1\n"
                    "vendor_id\t: Other\n")
    assert runtime.cpuinfo_field("vendor_id", str(info)) == "AuthenticAMD"  # the first CPU's
    assert runtime.cpuinfo_field("model name", str(info)) == "AMD EPYC 9R45"
    assert runtime.cpuinfo_field("model", str(info)) is None  # a whole key, not a prefix of "model name"
    assert runtime.cpuinfo_field("vendor_id", str(tmp_path / "absent")) is None


def test_the_environment_variable_overrides_and_a_bad_value_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "cpu_vendor", lambda: "AuthenticAMD")
    monkeypatch.setattr(runtime, "cpu_isa", lambda: ["avx512"])
    monkeypatch.setenv(FP32_LINEAR_ENV, "torch")
    assert fp32_linear_engine() == "torch"
    monkeypatch.setenv(FP32_LINEAR_ENV, "mkl")
    with pytest.raises(SetupError, match=f"{FP32_LINEAR_ENV}='mkl'.*auto, torch or onednn") as error:
        fp32_linear_engine()
    assert "\n" not in str(error.value)


def test_refusals_name_the_engine() -> None:
    with pytest.raises(SetupError, match="runs on CPU, not on cuda"):
        check_runtime("fp32", "torch", "cuda", "onednn")
    with pytest.raises(SetupError, match="'mkl' is not one of torch, onednn"):
        check_runtime("fp32", "torch", "cpu", "mkl")


@needs_onednn
def test_apply_runtime_gives_fp32_trackers_the_engine_and_keeps_their_boxes() -> None:
    torch.manual_seed(0)
    module = build_model_from_configs(OSTRACK_TINY).eval()
    frame = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    box = np.array([60.0, 40.0, 30.0, 24.0])
    plain = apply_runtime(module.build_tracker(), fp32_linear="torch")
    routed = apply_runtime(module.build_tracker(), fp32_linear="onednn")
    assert plain.network is module.network  # torch's engine: nothing copied
    assert routed.network is not module.network and routed.name == plain.name  # fp32 either way: same results folder
    assert any(isinstance(m, OneDNNLinear) for m in routed.network.modules())
    assert not any(isinstance(m, OneDNNLinear) for m in module.network.modules())
    boxes = []
    for tracker in (plain, routed):
        tracker.initialize(frame, box)
        boxes.append(np.stack([tracker.track(frame).box for _ in range(3)]))
    np.testing.assert_allclose(boxes[1], boxes[0], atol=1e-3)


@needs_onednn
def test_benchmark_compares_the_engines_in_one_run(tmp_path: Path) -> None:
    out = tmp_path / "model.json"
    args = ["benchmark", "model", "--config", OSTRACK_TINY[0], "--config", SMOKE, "--config", OSTRACK_TINY[2],
            "--compare", f"{','.join(OSTRACK_TINY)}@int8", "--fp32-linear", "torch", "onednn",
            "--iters", "1", "--warmup", "0", "--json", str(out)]
    assert cli.main(args) == 0
    reports = json.loads(out.read_text())
    assert [r["name"] for r in reports] == ["ostrack_256 + cpu_smoke + ostrack_tiny [torch linear]",
                                            "ostrack_256 + cpu_smoke + ostrack_tiny [onednn linear]",
                                            "ostrack_256 + cpu_smoke + ostrack_tiny_int8"]  # int8 has no fp32 engine
    assert reports[0]["gflops"] == reports[1]["gflops"] > 0
    assert reports[0]["environment"]["fp32_linear"] in ("torch", "onednn")


def test_onnxruntime_is_compared_with_pytorchs_default_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    """`lightning export --benchmark` times PyTorch as `lightning test` runs it: with the CPU's Linear engine."""
    pytest.importorskip("onnxruntime")
    from trackers.deploy import speed as deploy_speed

    applied = []
    monkeypatch.setattr(deploy_speed, "apply_runtime", lambda tracker: applied.append(tracker) or apply_runtime(tracker))
    torch.manual_seed(0)
    result = deploy_speed.compare_backends(build_model_from_configs(OSTRACK_TINY), frames=2)
    assert len(applied) == 1  # the PyTorch side, not a bare build_tracker()
    assert result.fp32_linear == fp32_linear_engine()
    assert f"PyTorch ({result.fp32_linear} Linear)" in result.summary()
