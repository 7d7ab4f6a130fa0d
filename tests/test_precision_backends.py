"""`--precision` / `--backend` of every family's tracker (``trackers.inference.runtime``) on tiny models:
bf16 / int8 close to fp32, int8 really quantised, the refusals as one line, `lightning test`'s result folders."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from timm.layers import PatchEmbed
from torch import nn

from datamodules.synthtrack import write_synthtrack
from lightning_app import cli
from lightning_app.config_loading import build_model_from_configs
from trackers.errors import SetupError
from trackers.inference.center_head_tracker import CenterHeadTracker
from trackers.inference.dytrack_tracker import DyTrackTracker
from trackers.inference.mixformerv2_tracker import MixFormerTracker
from trackers.inference.online import FirstBoxTracker
from trackers.inference.runtime import (FP32_HEADS, FP32_MODULES, AutocastNetwork, NetworkProxy, apply_runtime, check_runtime,
                                        int8_engine, quantize_linear_int8, runtime_suffix)

ROOT = Path(__file__).resolve().parents[1]
SMOKE = "configs/presets/cpu_smoke.yaml"
FAMILIES = {
    "ostrack": ["configs/ostrack_256.yaml", SMOKE, "configs/presets/ostrack_tiny.yaml"],
    "compresstracker": ["configs/compresstracker_4.yaml", SMOKE, "configs/presets/cpu_smoke_compresstracker/student.yaml"],
    "mixformerv2": ["configs/mixformerv2_b.yaml", SMOKE],
    "dytrack": ["configs/dytrack_256.yaml", SMOKE, "configs/presets/dytrack_tiny.yaml"],
}
# bf16 keeps 8 mantissa bits: through a few random tiny blocks the maps move by a few hundredths.
TOLERANCE = {"bf16": 0.1, "int8": 0.1}


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request) -> tuple[str, nn.Module]:
    torch.manual_seed(0)
    module = build_model_from_configs([str(ROOT / c) for c in FAMILIES[request.param]])
    return request.param, module.eval()


def frame_and_box() -> tuple[np.ndarray, np.ndarray]:
    frame = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    return frame, np.array([60.0, 40.0, 30.0, 24.0])


def decoded_maps(tracker, search: torch.Tensor) -> torch.Tensor:  # noqa: ANN001 - any family's tracker
    """The network output the family's tracker decodes, through the tracker's own (possibly wrapped) network."""
    with torch.inference_mode():
        if isinstance(tracker, MixFormerTracker):
            out = tracker.network.forward_with_cache(tracker._cache, search, softmax=True)
            return out.boxes
        if isinstance(tracker, DyTrackTracker):
            return tracker.run_exits(search, force_exit=tracker.network.num_exits - 1).aux["score_map"]
        assert isinstance(tracker, CenterHeadTracker)
        out = tracker.network(tracker.template, search, ce_template_mask=tracker._ce_mask,
                              ce_keep_rate=tracker.ce_keep_rate)
        return torch.cat([out.aux["score_map"].flatten(), out.aux["size_map"].flatten()])


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_reduced_precision_outputs_stay_close_to_fp32_and_decode_in_fp32(family, precision: str) -> None:
    name, module = family
    frame, box = frame_and_box()
    reference, reduced = module.build_tracker(), apply_runtime(module.build_tracker(), precision)
    assert reduced.name == f"{reference.name}_{precision}"
    for tracker in (reference, reduced):
        tracker.initialize(frame, box)
    search = torch.randn(1, 3, reference.search_size, reference.search_size, generator=torch.Generator().manual_seed(1))
    expected, got = decoded_maps(reference, search), decoded_maps(reduced, search)
    assert got.dtype == torch.float32  # decode, window and map-back stay fp32
    assert not torch.equal(expected, got), f"{name} {precision}: the network ran in fp32"
    torch.testing.assert_close(got, expected, atol=TOLERANCE[precision], rtol=0.0)
    result = reduced.track(frame)  # the whole step runs
    assert np.isfinite(result.box).all() and result.box.dtype == np.float64


def test_mixformer_templates_are_encoded_under_the_same_precision() -> None:
    module = build_model_from_configs([str(ROOT / c) for c in FAMILIES["mixformerv2"]]).eval()
    tracker = apply_runtime(module.build_tracker(), "bf16")
    assert tracker.use_template_cache and isinstance(tracker.network, AutocastNetwork)
    tracker.initialize(*frame_and_box())
    assert {t.dtype for t in tracker._cache.keys + tracker._cache.values} == {torch.bfloat16}


def test_int8_network_holds_quantised_linears_on_a_copy(family) -> None:
    name, module = family
    tracker = apply_runtime(module.build_tracker(), "int8")
    quantised = [m for m in tracker.network.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    plain = [m for m in tracker.network.modules() if type(m) is nn.Linear]
    assert quantised and not plain, f"{name}: {len(quantised)} int8 Linear, {len(plain)} fp32 Linear left"
    assert tracker.network is not module.network
    assert any(type(m) is nn.Linear for m in module.network.modules())  # the module's own network stays fp32


def test_int8_calls_run_on_the_engine_the_weights_were_packed_for() -> None:
    """The quantised engine is process state: each int8 call sets its own and leaves the caller's as it was."""
    module = build_model_from_configs([str(ROOT / c) for c in FAMILIES["ostrack"]]).eval()
    other = next(e for e in torch.backends.quantized.supported_engines if e not in (int8_engine(), "none"))
    seen: list[str] = []
    tracker = module.build_tracker()
    tracker.network = quantize_linear_int8(tracker.network, engine=other)
    linear = next(m for m in tracker.network.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear))
    linear.register_forward_pre_hook(lambda *_: seen.append(torch.backends.quantized.engine))
    before = torch.backends.quantized.engine
    tracker.initialize(*frame_and_box())
    tracker.track(frame_and_box()[0])
    assert seen and set(seen) == {other} and torch.backends.quantized.engine == before
    with pytest.raises(SetupError, match="not built into this torch"):
        quantize_linear_int8(module.network, engine="no-such-engine")


def test_benchmark_model_counts_the_models_flops_at_every_precision() -> None:
    """Quantised Linear layers are invisible to torch's flop counter: int8 reports the fp32 call's count."""
    from lightning_app.commands.benchmark import benchmark_model
    from lightning_app.commands.benchmark_entries import Entry

    configs = [str(ROOT / c) for c in FAMILIES["ostrack"]]
    fp32, int8 = benchmark_model([Entry(configs, "fp32"), Entry(configs, "int8")], torch.device("cpu"), 0, 1)
    assert int8.name == fp32.name + "_int8"
    assert int8.gmacs == pytest.approx(fp32.gmacs) and fp32.gmacs > 0


def test_proxy_runs_every_call_and_generator_step_through_run(family) -> None:
    """A proxy sees each network call the tracker makes (DyTrack: each exit step of ``iter_exits``)."""
    name, module = family
    calls: list[str] = []

    class Recording(NetworkProxy):
        def run(self, call_name, call):  # noqa: ANN001, ANN201
            calls.append(call_name)
            return call()

    tracker = module.build_tracker()
    tracker.network = Recording(AutocastNetwork(tracker.network, "cpu"))  # proxies stack
    tracker.initialize(*frame_and_box())
    tracker.track(frame_and_box()[0])
    expected = {"ostrack": {"forward"}, "compresstracker": {"forward"},
                "mixformerv2": {"prepare_templates", "forward_with_cache"}, "dytrack": {"embed", "iter_exits"}}[name]
    assert expected <= set(calls)
    if name == "dytrack":
        assert calls.count("iter_exits") >= 2  # generator creation + at least one exit step


@pytest.mark.parametrize("native", [False, True])
def test_bf16_warns_in_one_line_on_a_cpu_without_bf16_instructions(monkeypatch: pytest.MonkeyPatch,
                                                                     native: bool) -> None:
    """Emulated bf16 ran 5-6x slower than fp32 on an AVX2-only EPYC: say so, but run it (the outputs are bf16's)."""
    import warnings

    for probe in ("avx512_bf16", "amx_tile"):
        monkeypatch.setattr(torch.cpu, f"_is_{probe}_supported", lambda: native, raising=False)
    module = build_model_from_configs([str(ROOT / c) for c in FAMILIES["ostrack"]]).eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracker = apply_runtime(module.build_tracker(), "bf16")
    slow = [str(w.message) for w in caught if "bf16 instructions" in str(w.message)]
    assert isinstance(tracker.network, AutocastNetwork)
    if native:
        assert not slow
    else:
        assert len(slow) == 1 and "\n" not in slow[0] and slow[0].startswith("--precision bf16")
        assert "--precision int8" in slow[0] and "avx512_bf16 or amx_tile" in slow[0]


def test_refusals_are_one_line() -> None:
    cases = {("int8", "torch", "cuda"): "--precision int8", ("bf16", "onnxruntime", "cpu"): "--precision bf16",
             ("fp32", "onnxruntime", "cuda"): "--backend onnxruntime", ("fp16", "torch", "cpu"): "--precision 'fp16'",
             ("fp32", "tensorrt", "cpu"): "--backend 'tensorrt'"}
    for (precision, backend, device), start in cases.items():
        with pytest.raises(SetupError) as err:
            check_runtime(precision, backend, device)
        assert str(err.value).startswith(start) and "\n" not in str(err.value)
    with pytest.raises(SetupError, match="has no network"):
        apply_runtime(FirstBoxTracker(), "bf16")


def test_runtime_suffix_names_non_default_runs() -> None:
    assert runtime_suffix() == "" and runtime_suffix("bf16") == "_bf16"
    assert runtime_suffix("int8", "onnxruntime") == "_int8_onnxruntime" and runtime_suffix("fp32", "onnxruntime") == "_onnxruntime"


def test_onnxruntime_backend_runs_the_exported_graphs_with_the_same_outputs() -> None:
    module = build_model_from_configs([str(ROOT / c) for c in FAMILIES["ostrack"]]).eval()
    reference, tracker = module.build_tracker(), module.build_tracker()
    network = tracker.network
    assert apply_runtime(tracker, "fp32", "onnxruntime") is tracker
    assert tracker.network is not network and tracker.name.endswith("_onnxruntime")
    frame, box = frame_and_box()
    for t in (reference, tracker):
        t.initialize(frame, box)
    search = torch.randn(1, 3, reference.search_size, reference.search_size, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(decoded_maps(tracker, search), decoded_maps(reference, search), atol=1e-4, rtol=0.0)


def test_bf16_weights_cast_once_give_autocast_outputs(family) -> None:
    """Storing Linear / conv weights in bf16 is what autocast does per call: same outputs, original kept fp32."""
    name, module = family
    frame, box = frame_and_box()
    per_call = module.build_tracker()
    per_call.network = AutocastNetwork(per_call.network, "cpu", torch.bfloat16, cast_weights=False)
    cast_once = apply_runtime(module.build_tracker(), "bf16")
    in_heads = {id(s) for m in cast_once.network.modules() if isinstance(m, FP32_MODULES) for s in m.modules()}
    assert any(isinstance(m, FP32_HEADS) for m in cast_once.network.modules()), f"{name}: no prediction head found"
    assert any(isinstance(m, PatchEmbed) and id(m) in in_heads for m in cast_once.network.modules())
    linears = [m for m in cast_once.network.modules() if isinstance(m, nn.Linear)]
    assert {p.dtype for m in linears if id(m) not in in_heads for p in m.parameters()} == {torch.bfloat16}
    assert {p.dtype for m in cast_once.network.modules() if id(m) in in_heads for p in m.parameters(recurse=False)} \
        == {torch.float32}  # the heads and the patch embedding run in fp32
    for layer in (m for m in cast_once.network.modules() if id(m) in in_heads and isinstance(m, (nn.Linear, nn.Conv2d))):
        probe = torch.randn(1, layer.in_features, dtype=torch.bfloat16) if isinstance(layer, nn.Linear) \
            else torch.randn(1, layer.in_channels, *layer.kernel_size, dtype=torch.bfloat16)
        with torch.autocast("cpu", torch.bfloat16):
            assert layer(probe).dtype == torch.float32  # whichever method of the head calls it (DyTrack's stem)
    assert {p.dtype for p in module.network.parameters()} == {torch.float32}
    for tracker in (per_call, cast_once):
        tracker.initialize(frame, box)
    search = torch.randn(1, 3, per_call.search_size, per_call.search_size, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(decoded_maps(cast_once, search), decoded_maps(per_call, search), atol=1e-6, rtol=0.0)


# ---------------------------------------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def tiny_synth(tmp_path_factory) -> Path:
    return write_synthtrack(tmp_path_factory.mktemp("synth"), num_train=1, num_test=1, length=6,
                            image_size=(160, 120), seed=3)


def lightning_test(synth: Path, out: Path, *extra: str, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(sys, "argv", ["lightning"])
    args = [a for c in FAMILIES["ostrack"] for a in ("--config", str(ROOT / c))]
    test = json.dumps({"type": "synthtrack", "root": str(synth), "split": "test"})
    return cli.main(["test", *args, "--data.init_args.test", test, "--data.init_args.val_datasets", "null",
                     "--data.init_args.datasets", json.dumps([{"type": "synthtrack", "root": str(synth), "split": "train"}]),
                     "--trainer.default_root_dir", str(out), "--trainer.enable_progress_bar", "false",
                     "--trainer.logger", "false", *extra])


def test_lightning_test_result_folders_carry_the_precision(tiny_synth: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    assert lightning_test(tiny_synth, tmp_path, "--precision", "int8", monkeypatch=monkeypatch) == 0
    record = json.loads((tmp_path / "results/synthtrack/ostrack_int8/metrics.json").read_text())
    assert record["tracker"] == "ostrack_int8"
    assert lightning_test(tiny_synth, tmp_path, "--precision", "bf16", "--model.init_args.tracker_name", "mine",
                          monkeypatch=monkeypatch) == 0
    assert json.loads((tmp_path / "results/synthtrack/mine_bf16/metrics.json").read_text())["tracker"] == "mine_bf16"
    assert not (tmp_path / "results/synthtrack/ostrack").exists()  # no fp32 folder was overwritten


def test_fit_refuses_a_tracker_precision_in_one_line(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["lightning"])
    args = [a for c in FAMILIES["ostrack"] for a in ("--config", str(ROOT / c))]
    assert cli.main(["fit", *args, "--precision", "bf16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--trainer.precision" in err[0]


def test_benchmark_model_names_the_precision(tmp_path: Path) -> None:
    out = tmp_path / "speed.json"
    args = [a for c in FAMILIES["mixformerv2"] for a in ("--config", str(ROOT / c))]
    assert cli.main(["benchmark", "model", *args, "--precision", "bf16", "--iters", "1", "--warmup", "0",
                     "--json", str(out)]) == 0
    (report,) = json.loads(out.read_text())
    assert report["name"] == "mixformerv2_b + cpu_smoke_bf16" and report["params_m"] > 0
