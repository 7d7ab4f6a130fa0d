"""CompressTracker training against the official code: every training fixture (``family`` ``compresstracker_train``)
and every replacement-schedule fixture, found by content under the fixture root (fixtures README C).

Each training fixture holds the official training network (student + frozen teacher copies) with a
fixed stage mask: the hybrid path, per-stage features and every loss term must match, end to end
(the suite's forward, then its losses) and loss-only (the suite's losses on the stored outputs).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch

from callbacks.schedules import replacement_probability
from conftest import fixtures_root
from parity_harness import official_center_tracker_args
from trackers.methods.compresstracker import (
    CompressTracker,
    ReplacementOutputs,
    guidance_losses,
    stage_feature_mse,
)
from trackers.models.checkpoints import load_strict
from trackers.models.compresstracker import build_student, official_training_states
from trackers.models.ostrack import OSTrack
from trackers.nn import box_ops
from trackers.nn.losses import gaussian_heatmap
from trackers.nn.vit import TokenState
from trackers.safe_unpickling import load_checkpoint_data
from trackers.types import TrackerOutput

TRAINING_FAMILY = "compresstracker_train"
SCHEDULE_KIND = "replacement_probability_schedule"
MEAN_LOGGED = ("iou", "iou_pg")  # per row in the fixture; the suite logs their batch mean (the official status IoU)


def training_fixtures(root: Path) -> list[Path]:
    parity = root / "parity"
    dirs = sorted(d for d in parity.iterdir() if (d / "meta.json").is_file()) if parity.is_dir() else []
    return [d for d in dirs if json.loads((d / "meta.json").read_text()).get("family") == TRAINING_FAMILY]


def schedule_fixtures(root: Path) -> list[Path]:
    folder = root / "schedules"
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    return [f for f in files if json.loads(f.read_text()).get("kind") == SCHEDULE_KIND]


def _method(meta: Mapping[str, Any]) -> CompressTracker:
    """Student and teacher built from the fixture's official config names (the teacher has the teacher depth)."""
    args = official_center_tracker_args(meta["config"], meta["backbone_args"])
    teacher_depth, rate = args.pop("depth"), args.pop("drop_path_rate")
    for key in ("ce_loc", "ce_keep_ratio", "ce_template_range"):
        args.pop(key)
    student = build_student(int(meta["config"]["MODEL.BACKBONE.DISTILL_LAYER"]), teacher_depth, rate, **args)
    teacher = OSTrack(depth=teacher_depth, drop_path_rate=rate, **args)
    w = meta["loss_call"]["loss_weights"]
    method = CompressTracker(network=student, teacher=teacher)
    assert (method.loss_weights.giou, method.loss_weights.l1, method.loss_weights.focal) == (w["giou"], w["l1"], w["focal"])
    assert (method.loss_weights.distill, method.loss_weights.guidance, method.loss_weights.feature) == (
        w["dst"], w["dst_logit"], w["dst_feat"],
    )  # fmt: skip
    return method


def _load(fixture: Path) -> tuple[dict, CompressTracker, dict, dict]:
    meta = json.loads((fixture / "meta.json").read_text())
    method = _method(meta)
    state = load_checkpoint_data(fixture / "checkpoint.pth.tar")["net"]
    student_state, teacher_state = official_training_states(state)
    for k in [k for k in state if k.startswith("backbone.blocks.")]:  # the official copy is the teacher's blocks
        assert torch.equal(state[k], teacher_state[k]), k
    load_strict(method.network, student_state, str(fixture))
    load_strict(method.teacher, teacher_state, str(fixture))
    method.has_teacher_weights = True
    method.eval()
    inputs = torch.load(fixture / "inputs.pt", weights_only=True)
    expected = torch.load(fixture / "outputs.pt", weights_only=True)
    return meta, method, inputs, expected


def _batch(inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    gt_xywh = inputs["search_anno"][-1]
    return {
        "template": inputs["template"].unsqueeze(1),
        "search": inputs["search"],
        "search_box": box_ops.xyxy_to_cxcywh(box_ops.xywh_to_xyxy(gt_xywh)),
    }


def _named(losses: Mapping[str, torch.Tensor], meta: Mapping[str, Any], method: CompressTracker,
           mse: tuple[torch.Tensor, torch.Tensor], batch: Mapping[str, torch.Tensor], score_map: torch.Tensor) -> dict:
    """The suite's loss terms under the fixture's names (README C.4)."""
    heatmap = gaussian_heatmap(box_ops.cxcywh_to_xywh(batch["search_box"]), score_map.shape[-1]).unsqueeze(1)
    w = method.loss_weights
    return {
        "gt_heatmap": heatmap,
        "iou": losses["iou"],
        "iou_pg": losses["guidance_iou"],
        "loss_giou": losses["giou"],
        "loss_l1": losses["l1"],
        "loss_location": losses["focal"],
        "loss_pg_giou": losses["guidance_giou"],
        "loss_pg_l1": losses["guidance_l1"],
        "loss_dst_logit": w.guidance * losses["guidance"],
        "loss_feat_mse_search": mse[0],
        "loss_feat_mse_template": mse[1],
        "loss_dst_feat": w.feature * losses["feature"],
        "loss_total": losses["total"],
    }


def _compare(got: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], meta: Mapping[str, Any], keys) -> None:
    for key in keys:
        spec = meta["outputs"][key]
        want = expected[key].mean() if key in MEAN_LOGGED else expected[key]
        torch.testing.assert_close(got[key].float().reshape(want.shape), want,
                                   atol=spec["atol"], rtol=spec["rtol"], msg=lambda m, k=key: f"{k}: {m}")


def test_training_and_schedule_fixtures_exist() -> None:
    root = fixtures_root()
    assert training_fixtures(root), f"no {TRAINING_FAMILY} fixture under {root / 'parity'}; set DISTILTRACK_FIXTURES"
    assert schedule_fixtures(root), f"no {SCHEDULE_KIND} under {root / 'schedules'}; set DISTILTRACK_FIXTURES"


@pytest.mark.parametrize("fixture", training_fixtures(fixtures_root()), ids=lambda d: d.name)
def test_training_fixture_end_to_end(fixture: Path) -> None:
    """The suite's hybrid forward on the fixture's stage mask, its teacher forward and its losses."""
    meta, method, inputs, expected = _load(fixture)
    batch = _batch(inputs)
    mask = [bool(m) for m in meta["stage_mask"]]
    with torch.no_grad():
        student, stages, layout = method.replacement_forward(batch, mask)
        teacher, teacher_stages = method.teacher_outputs(batch)
        outputs = ReplacementOutputs(student, stages, layout, teacher, teacher_stages)
        losses = method.losses_of(outputs, batch)
        mse = stage_feature_mse(stages, teacher_stages, layout.num_template, layout.num_search)
    got = {
        "pred_boxes": student.boxes,
        "score_map": student.aux["score_map"],
        "size_map": student.aux["size_map"],
        "offset_map": student.aux["offset_map"],
        "backbone_feat": student.aux["backbone_feat"],
        "pred_boxes_teacher": teacher.boxes,
        **{f"distill_student_features_{i}": s for i, s in enumerate(stages)},
        **{f"distill_teacher_features_{i}": t for i, t in enumerate(teacher_stages)},
        **_named(losses, meta, method, mse, batch, student.aux["score_map"]),
    }
    assert set(meta["outputs"]) <= set(got)
    _compare(got, expected, meta, meta["outputs"])


@pytest.mark.parametrize("fixture", training_fixtures(fixtures_root()), ids=lambda d: d.name)
def test_training_fixture_losses_only(fixture: Path) -> None:
    """The suite's losses on the stored official outputs: isolates the losses from the forward."""
    meta, method, inputs, expected = _load(fixture)
    batch = _batch(inputs)
    n = meta["derived"]["num_stages"]
    student = TrackerOutput(boxes=expected["pred_boxes"][:, 0], score=None, aux={"score_map": expected["score_map"]})
    teacher = TrackerOutput(boxes=expected["pred_boxes_teacher"][:, 0], score=None, aux={})
    s = [expected[f"distill_student_features_{i}"] for i in range(n)]
    t = [expected[f"distill_teacher_features_{i}"] for i in range(n)]
    nz, nx = meta["derived"]["template_tokens"], meta["derived"]["search_tokens"]
    layout = TokenState(tokens=s[-1], num_template=nz, num_search=nx, num_extra=0, total_search=nx,
                        search_grid=(16, 16), search_index=torch.zeros(1))
    losses = method.losses_of(ReplacementOutputs(student, s, layout, teacher, t), batch)
    got = _named(losses, meta, method, stage_feature_mse(s, t, nz, nx), batch, expected["score_map"])
    _compare(got, expected, meta, [k for k in got if k in meta["outputs"]])
    status = meta["loss_call"]["status"]
    assert float(losses["total"]) == pytest.approx(status["Loss/total"], rel=1e-4)
    g = guidance_losses(student.boxes, teacher.boxes)
    assert float(g["guidance_giou"]) == pytest.approx(float(expected["loss_pg_giou"]), rel=1e-4)


@pytest.mark.parametrize("schedule", schedule_fixtures(fixtures_root()), ids=lambda f: f.stem)
def test_replacement_schedule_fixture(schedule: Path) -> None:
    doc = json.loads(schedule.read_text())
    for setting in doc["settings"]:
        base, m = setting["epoch_base"], setting["max_epoch"]
        mine = [replacement_probability(epoch - base + 1, m) for epoch in range(base, base + m)]
        assert max(abs(a - b) for a, b in zip(mine, setting["p"])) <= doc["tolerance"]["atol"], m


def test_fixtures_are_found_under_distiltrack_fixtures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory of the same format named by $DISTILTRACK_FIXTURES is searched instead of ../shared/fixtures."""
    source = fixtures_root()
    (tmp_path / "parity").mkdir()
    (tmp_path / "schedules").mkdir()
    fixture = training_fixtures(source)[0]
    os.symlink(fixture, tmp_path / "parity" / "renamed_training_fixture")
    schedule = schedule_fixtures(source)[0]
    (tmp_path / "schedules" / "renamed.json").write_text(schedule.read_text())
    monkeypatch.setenv("DISTILTRACK_FIXTURES", str(tmp_path))
    assert [d.name for d in training_fixtures(fixtures_root())] == ["renamed_training_fixture"]
    assert [f.name for f in schedule_fixtures(fixtures_root())] == ["renamed.json"]
    test_training_fixture_end_to_end(training_fixtures(fixtures_root())[0])
    test_replacement_schedule_fixture(schedule_fixtures(fixtures_root())[0])
