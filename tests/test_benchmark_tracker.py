"""`lightning benchmark tracker`: entries, the JSON records analyze reads, the default path, one-line errors.

Times are only checked for being measured (positive, finite, network inside the step), never against a time.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from datamodules.synthtrack import write_synthtrack
from lightning_app import cli
from lightning_app.commands.benchmark_entries import Entry, parse_entry
from lightning_app.commands.benchmark_tracker import Clip, time_trackers
from trackers.errors import SetupError
from trackers.inference.runtime import cpu_isa, int8_engine

ROOT = Path(__file__).resolve().parents[1]
OSTRACK = [str(ROOT / c) for c in ("configs/ostrack_256.yaml", "configs/presets/cpu_smoke.yaml",
                                   "configs/presets/ostrack_tiny.yaml")]
MIXFORMER = [str(ROOT / c) for c in ("configs/mixformerv2_b.yaml", "configs/presets/cpu_smoke.yaml")]
RECORD_KEYS = {"name", "precision", "backend", "device", "fps", "network_fps", "end_to_end", "network",
               "overhead_share", "environment"}
LATENCY_KEYS = {"median_ms", "p10_ms", "p90_ms", "p99_ms", "mean_ms"}


def test_entries_take_precision_and_backend_after_an_at() -> None:
    assert parse_entry("a.yaml,b.yaml", "fp32", "torch") == Entry(["a.yaml", "b.yaml"], "fp32", "torch")
    assert parse_entry("a.yaml@bf16", "fp32", "torch") == Entry(["a.yaml"], "bf16", "torch")
    assert parse_entry("a.yaml@int8/onnxruntime", "fp32", "torch") == Entry(["a.yaml"], "int8", "onnxruntime")
    assert parse_entry("a.yaml", "int8", "torch").label == "a_int8"
    with pytest.raises(SetupError, match=r"CONFIGS\[@PRECISION"):
        parse_entry("a.yaml@fp16", "fp32", "torch")


@pytest.fixture(scope="module")
def bench_preset(tmp_path_factory) -> Path:
    """A preset pointing the test benchmark at a tiny SynthTrack and the run folder at a temp folder."""
    root = tmp_path_factory.mktemp("bench")
    synth = write_synthtrack(root / "synth", num_train=1, num_test=2, length=5, image_size=(160, 120), seed=3)
    preset = root / "bench.yaml"
    preset.write_text(yaml.safe_dump({
        "trainer": {"default_root_dir": str(root / "run")},
        "data": {"init_args": {"test": {"type": "synthtrack", "root": str(synth), "split": "test"}}},
    }))
    return preset


def test_compare_writes_one_record_per_entry_with_ratios(bench_preset: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "speed.json"
    ostrack = ",".join([*OSTRACK, str(bench_preset)])
    mixformer = ",".join([*MIXFORMER, str(bench_preset)])
    code = cli.main(["benchmark", "tracker", "--compare", ostrack, f"{ostrack}@int8", f"{mixformer}@bf16",
                     "--frames", "6", "--warmup", "1", "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    records = json.loads(out.read_text())
    assert [(r["name"], r["precision"], r["backend"]) for r in records] == [
        ("ostrack", "fp32", "torch"), ("ostrack_int8", "int8", "torch"), ("mixformerv2_bf16", "bf16", "torch")]
    for r in records:
        assert RECORD_KEYS <= set(r) and LATENCY_KEYS == set(r["end_to_end"]) == set(r["network"])
        assert r["frames"] == 6 and r["benchmark"] == "synthtrack" and r["device"] == "cpu"
        assert 0.0 <= r["overhead_share"] < 1.0
        assert r["network"]["mean_ms"] <= r["end_to_end"]["mean_ms"]  # the network runs inside the step
        assert math.isfinite(r["fps"]) and r["fps"] == pytest.approx(1e3 / r["end_to_end"]["median_ms"])
        assert r["network_fps"] == pytest.approx(1e3 / r["network"]["median_ms"])
        assert {"cpu", "cpu_isa", "int8_engine", "torch_threads", "torch", "gpu", "cuda"} <= set(r["environment"])
        assert r["environment"]["cpu_isa"] == cpu_isa()
    assert records[0]["speedup"] == 1.0 and records[0]["network_speedup"] == 1.0
    assert "ratios against" in printed and "ostrack_256 + cpu_smoke + ostrack_tiny + bench_int8" in printed


def test_default_json_goes_next_to_the_test_results(bench_preset: Path) -> None:
    args = [a for c in [*OSTRACK, str(bench_preset)] for a in ("--config", c)]
    assert cli.main(["benchmark", "tracker", *args, "--precisions", "fp32", "bf16", "--frames", "2",
                     "--warmup", "0"]) == 0
    path = bench_preset.parent / "run/results/synthtrack/ostrack/tracker_speed.json"
    assert [r["name"] for r in json.loads(path.read_text())] == ["ostrack", "ostrack_bf16"]


def test_impossible_runtime_is_one_line_before_anything_runs(capsys: pytest.CaptureFixture) -> None:
    args = [a for c in OSTRACK for a in ("--config", c)]
    assert cli.main(["benchmark", "tracker", *args, "--precision", "bf16", "--backend", "onnxruntime"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --precision bf16")


class _LoggingTracker:
    """Records which tracker stepped, in order; its network is a module the timer can wrap."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log
        self.network, self.device = torch.nn.Identity(), torch.device("cpu")

    def initialize(self, frame, box) -> None:  # noqa: ANN001
        pass

    def track(self, frame) -> None:  # noqa: ANN001
        self.log.append(self.name)


def test_entries_take_turns_and_each_times_its_own_frames_after_warmup() -> None:
    log: list[str] = []
    clips = [Clip([np.zeros((2, 2, 3))] * 5, np.zeros(4)), Clip([np.zeros((2, 2, 3))] * 4, np.zeros(4))]  # 7 steps
    trackers = [_LoggingTracker("a", log), _LoggingTracker("b", log)]
    measured = time_trackers(trackers, clips, warmup=1, turn=2)
    assert log == ["a", "b", "a", "a", "b", "b", "b", "b", "a", "a", "a", "a", "b", "b"]
    assert [len(m.end_to_end_ms) for m in measured] == [6, 6]
    assert all(isinstance(t.network, torch.nn.Identity) for t in trackers)  # the timer unwrapped
    log.clear()
    time_trackers(trackers, clips, warmup=0, turn=0)
    assert log == ["a"] * 7 + ["b"] * 7


def test_cpu_isa_follows_torchs_probes_and_picks_the_int8_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ISA list is what torch's probes say, and a probe this torch lacks reads as absent."""
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_vnni_supported", lambda: False, raising=False)
    monkeypatch.delattr(torch.cpu, "_is_amx_fp16_supported", raising=False)
    isa = cpu_isa()
    assert "amx_tile" in isa and "vnni" not in isa and "amx_fp16" not in isa
    if "onednn" in torch.backends.quantized.supported_engines:
        assert int8_engine() == "onednn"  # AMX alone is an int8 dot product
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
        assert int8_engine() == torch.backends.quantized.engine
