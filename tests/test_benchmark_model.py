"""`lightning benchmark model`: the JSON it writes, and the full-size OSTrack-256 figures of the spec.

Latency values are only checked for being measured (positive, finite), never against a time.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils import flop_counter

from lightning_app import cli
from trackers.evaluation import speed

ROOT = Path(__file__).resolve().parents[1]
OSTRACK = str(ROOT / "configs/ostrack_256.yaml")
SMOKE = str(ROOT / "configs/presets/cpu_smoke.yaml")
# ../shared/specs/compresstracker.md §1.4: parameters (verified) and MACs (torch FlopCounter, batch 1, FLOPs/2).
OSTRACK_256_PARAMS = 92_518_533
OSTRACK_256_CE_GMACS = 22.6


def benchmark(tmp_path: Path, *args: str) -> list[dict]:
    out = tmp_path / "reports" / "speed.json"
    assert cli.main(["benchmark", "model", *args, "--iters", "1", "--warmup", "0", "--json", str(out)]) == 0
    return json.loads(out.read_text())


def test_compare_writes_one_report_per_entry(tmp_path: Path) -> None:
    reports = benchmark(tmp_path, "--config", OSTRACK, "--config", SMOKE, "--compare", f"{OSTRACK},{SMOKE}",
                        f"{OSTRACK},{SMOKE}@int8")
    assert [r["name"] for r in reports] == ["ostrack_256 + cpu_smoke"] * 2 + ["ostrack_256 + cpu_smoke_int8"]
    for report in reports:
        assert report["device"] == "cpu"
        assert report["params_m"] > 1.0 and report["params_m"] < 5.0  # the tiny model, not ViT-B
        assert report["gflops"] == pytest.approx(2 * report["gmacs"]) and report["gmacs"] > 0
        assert math.isfinite(report["latency_ms_median"]) and report["latency_ms_median"] > 0
        assert report["fps"] == pytest.approx(1e3 / report["latency_ms_median"])
        assert {"cpu", "cpu_isa", "int8_engine", "torch_threads", "torch"} <= set(report["environment"])
    assert reports[0]["params_m"] == reports[1]["params_m"] == reports[2]["params_m"]
    assert reports[0]["gflops"] == reports[1]["gflops"] == reports[2]["gflops"]  # int8 counts the fp32 call


def test_full_size_ostrack_256_matches_the_spec(tmp_path: Path) -> None:
    """Built on CPU at full size (one counted forward, one timed one); CE keeps 256 -> 180 -> 126 -> 89 tokens."""
    (report,) = benchmark(tmp_path, "--config", OSTRACK)
    assert round(report["params_m"] * 1e6) == OSTRACK_256_PARAMS
    assert report["gmacs"] == pytest.approx(OSTRACK_256_CE_GMACS, rel=0.01)


def test_attention_flops_are_counted_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """SDPA runs a CPU-only kernel; without its formula the flop counter silently counts attention as 0."""
    q = k = v = torch.randn(1, 2, 10, 8)
    expected = 4 * 2 * 10 * 10 * 8  # QK^T and AV, two FLOPs per multiply-add
    assert speed.count_flops(lambda: F.scaled_dot_product_attention(q, k, v)) == expected

    cpu_kernel = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    registry = {op: f for op, f in flop_counter.flop_registry.items() if op is not cpu_kernel}
    monkeypatch.setattr(flop_counter, "flop_registry", registry)  # a torch release without the formula
    assert speed.count_flops(lambda: F.scaled_dot_product_attention(q, k, v)) == 0
    speed._register_cpu_attention_flops()
    assert speed.count_flops(lambda: F.scaled_dot_product_attention(q, k, v)) == expected


def test_bad_iters_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["benchmark", "model", "--config", OSTRACK, "--iters", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --iters")


def test_compared_models_are_timed_in_turns_of_calls_after_their_own_warmup() -> None:
    log: list[str] = []
    entries = [(name, torch.nn.Linear(1, 1), (lambda name=name: log.append(name)), None) for name in "ab"]
    reports = speed.speed_reports(entries, torch.device("cpu"), warmup=1, iters=5, turn=2)
    counted, warm, timed = log[:2], log[2:4], log[4:]  # one counted (FLOPs) and one warm-up call each first
    assert counted == warm == ["a", "b"] and timed == ["a", "a", "b", "b", "b", "b", "a", "a", "a", "b"]
    assert [r.name for r in reports] == ["a", "b"] and all(r.latency_ms_median > 0 for r in reports)
    log.clear()
    speed.speed_reports(entries, torch.device("cpu"), warmup=0, iters=3, turn=0)
    assert log[2:] == ["a"] * 3 + ["b"] * 3
