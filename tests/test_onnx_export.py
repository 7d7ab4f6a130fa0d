"""ONNX export (issue 14): every family's graphs match PyTorch on onnxruntime, the onnxruntime network gives the
PyTorch tracker's boxes on a SynthTrack sequence, `lightning export` end to end and its one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.readers import build_reader
from datamodules.sequences import EvalSequence, EvalSequenceDataset
from datamodules.synthtrack import write_synthtrack
from lightning_app import cli
from lightning_app.config_loading import build_model_from_configs
from trackers.deploy.onnx_export import FP32_TOLERANCE, MANIFEST_FILE, check_against_torch, export_onnx, write_manifest
from trackers.deploy.onnxruntime_network import load_onnx_network, onnxruntime_network
from trackers.errors import SetupError
from trackers.inference.ope import run_sequence

ROOT = Path(__file__).resolve().parents[1]
SMOKE = "configs/presets/cpu_smoke.yaml"
FAMILIES: dict[str, tuple[list[str], list[str]]] = {
    # family: (configs, overrides): the tiny presets, a few knobs turned so every code path runs
    "ostrack": (["configs/ostrack_256.yaml", SMOKE, "configs/presets/ostrack_tiny.yaml"], []),  # CE in blocks 1, 2
    "compresstracker": (["configs/compresstracker_4.yaml", SMOKE, "configs/presets/cpu_smoke_compresstracker/student.yaml"],
                        ["--model.init_args.teacher.init_args.depth=4"]),
    "mixformerv2": (["configs/mixformerv2_s_score.yaml", SMOKE],  # score head; template updates every 3 frames
                    ["--model.init_args.tracker.update_interval=3", "--model.init_args.tracker.score_threshold=0.0"]),
    "mixvit": (["configs/mixvit_b.yaml", SMOKE], ["--model.init_args.network.init_args.depth=2"]),
    "dytrack": (["configs/dytrack_256.yaml", SMOKE, "configs/presets/dytrack_tiny.yaml"], []),  # cascade recycling
}
GRAPHS = {"ostrack": ["network"], "compresstracker": ["network"], "mixformerv2": ["template", "search"],
          "mixvit": ["template", "search"], "dytrack": ["embed", "exit_0", "exit_1", "exit_2"]}
BOX_TOLERANCE_PX = 0.5
SEQUENCE_LENGTH = 12


def build(family: str):  # noqa: ANN201 - a TrackingModule
    configs, overrides = FAMILIES[family]
    torch.manual_seed(0)
    return build_model_from_configs([str(ROOT / c) for c in configs], overrides).eval()


@pytest.fixture(scope="module")
def sequence(tmp_path_factory) -> EvalSequence:
    root = write_synthtrack(tmp_path_factory.mktemp("synth"), num_train=0, num_test=1, length=SEQUENCE_LENGTH,
                            image_size=(160, 120), seed=2)
    return EvalSequenceDataset(build_reader("synthtrack", root, "test"))[0]


@pytest.fixture(scope="module", params=list(FAMILIES))
def exported(request, tmp_path_factory):  # noqa: ANN001, ANN201 - (family, module, folder, diffs)
    family = request.param
    module = build(family)
    tracker = module.build_tracker()
    folder = tmp_path_factory.mktemp(f"onnx_{family}")
    result = export_onnx(tracker.network, tracker.template_size, tracker.search_size, folder, tracker=tracker)
    diffs = check_against_torch(result)
    write_manifest(result, diffs)
    return family, module, folder, diffs


def test_every_graph_matches_pytorch_on_random_inputs(exported) -> None:  # noqa: ANN001
    family, module, folder, diffs = exported
    assert list(diffs) == GRAPHS[family]
    assert all(d <= FP32_TOLERANCE for d in diffs.values()), diffs
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    assert [g["name"] for g in manifest["graphs"]] == GRAPHS[family]
    for graph in manifest["graphs"]:
        assert (folder / graph["file"]).is_file()
        assert all(len(io["shape"]) >= 1 for io in graph["inputs"] + graph["outputs"])
    assert manifest["template_size"] == 64 and manifest["search_size"] == 128
    assert manifest["normalization"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert manifest["tracker"]["search_factor"] == module.build_tracker().search_factor
    if family == "ostrack":  # candidate elimination runs inside the graph
        assert manifest["candidate_elimination"]["in_graph"] and manifest["candidate_elimination"]["blocks"] == [1, 2]
    if family == "mixformerv2":
        assert manifest["has_score_head"] and manifest["tracker"]["update_interval"] == 3
        assert [o["name"] for o in manifest["graphs"][1]["outputs"]] == ["boxes", "score"]
    if family == "dytrack":
        assert manifest["exits"] == [1, 2, 4] and "thresholds" in manifest["tracker"]


def test_onnxruntime_tracker_gives_the_pytorch_boxes_on_synthtrack(exported, sequence: EvalSequence) -> None:  # noqa: ANN001
    family, module, folder, _ = exported
    tracker = module.build_tracker()
    thresholds = [None, 0.0] if family == "dytrack" else [None]  # DyTrack: the default, then always the first exit
    for threshold in thresholds:
        if threshold is not None:
            tracker.set_thresholds(threshold)
        tracker.network = module.network
        want = run_sequence(tracker, sequence, sequence.gt_boxes[0])
        tracker.network = load_onnx_network(folder, source=module.network)
        got = run_sequence(tracker, sequence, sequence.gt_boxes[0])
        assert np.abs(got.boxes - want.boxes).max() <= BOX_TOLERANCE_PX
        assert np.isfinite(got.boxes).all()
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-4)  # MixFormer's score / DyTrack's IoU (NaN: none)
        for name, values in want.extras.items():  # DyTrack: the same exit on every frame
            np.testing.assert_array_equal(got.extras[name], values)


def test_onnxruntime_network_is_the_contract_drop_in(tmp_path: Path) -> None:
    module = build("ostrack")
    tracker = module.build_tracker()
    network = onnxruntime_network(tracker.network, tracker.template_size, tracker.search_size, workdir=tmp_path)
    assert next(network.parameters()).device == torch.device("cpu")
    template, search = torch.randn(1, 3, 64, 64), torch.randn(1, 3, 128, 128)
    mask = module.network.ce_template_mask(1)
    for rate in (None, 1.0):  # the exported keep rate, and another one (exported on first use)
        with torch.no_grad():
            want = module.network(template, search, ce_template_mask=mask, ce_keep_rate=rate)
        got = network(template, search, ce_template_mask=mask, ce_keep_rate=rate)
        for name in ("score_map", "size_map", "offset_map"):
            torch.testing.assert_close(got.aux[name], want.aux[name], atol=FP32_TOLERANCE, rtol=0)
    assert (tmp_path / "ce_keep_rate_1.0" / MANIFEST_FILE).is_file()

    int8 = onnxruntime_network(tracker.network, 64, 128, precision="int8", workdir=tmp_path / "int8")
    assert int8.precision == "int8" and torch.isfinite(int8(template, search).boxes).all()
    with pytest.raises(SetupError, match="bf16") as err:
        onnxruntime_network(tracker.network, 64, 128, precision="bf16")
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------- the command

CLI_CONFIGS = [a for c in FAMILIES["ostrack"][0] for a in ("--config", str(ROOT / c))]


def test_export_command_writes_checked_graphs_and_the_manifest(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    network = build("ostrack").network
    checkpoint = tmp_path / "run.ckpt"
    torch.save({"state_dict": {f"network.{k}": v for k, v in network.state_dict().items()}, "ce_keep_rate": 1.0},
               checkpoint)
    out = tmp_path / "onnx"
    code = cli.main(["export", *CLI_CONFIGS, "--checkpoint", str(checkpoint), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    assert "max abs diff vs PyTorch" in captured.out and "(ok)" in captured.out
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["candidate_elimination"]["ce_keep_rate"] == 1.0  # the checkpoint's, not the configured 0.7
    assert not manifest["candidate_elimination"]["in_graph"]
    assert manifest["check"]["max_abs_diff"]["network"] <= FP32_TOLERANCE
    assert "warning" not in captured.err


@pytest.mark.parametrize("problem", ["missing_checkpoint", "out_under_a_file", "out_is_a_file"])
def test_export_errors_are_one_line(problem: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    args = {"missing_checkpoint": ["--checkpoint", str(tmp_path / "nope.ckpt"), "--out", str(tmp_path / "o")],
            "out_under_a_file": ["--out", str(blocker / "o")],
            "out_is_a_file": ["--out", str(blocker)]}[problem]
    code = cli.main(["export", *CLI_CONFIGS, *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len([line for line in err if line.startswith("error:")]) == 1
    line = next(line for line in err if line.startswith("error:"))
    assert ("--checkpoint" if problem == "missing_checkpoint" else "--out") in line
