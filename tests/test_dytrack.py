"""DyTrack's invariants (spec dytrack.md §11): exit rule, no repeated work, zero-init recycling,
stop-gradients of the distillation and the IoU target, token counts, checkpoint init from OSTrack."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trackers.inference.dytrack_tracker import NEVER_EXIT, DyTrackTrackerConfig, exit_thresholds
from trackers.methods.dytrack import (
    Distillation,
    DyTrackTraining,
    iou_score_loss,
    iou_target,
    self_distillation_loss,
    target_mask,
)
from trackers.models.checkpoints import load_weights
from trackers.models.dytrack import DyTrack
from trackers.models.ostrack import OSTrack
from trackers.nn.heads.center import CenterHead
from trackers.nn.window import hann2d

TINY = dict(embed_dim=32, depth=4, num_heads=2, head_channels=16, iou_hidden=16, exits=(1, 2, 4),
            template_size=32, search_size=64, drop_path_rate=0.0)
SCHEMAS = ["none", "direct", "dense", "cascade"]


def tiny(**changes) -> DyTrack:
    torch.manual_seed(0)
    return DyTrack(**{**TINY, **changes})


def inputs(batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(batch, 3, 32, 32, generator=g), torch.randn(batch, 3, 64, 64, generator=g)


def batch_of(n: int = 2) -> dict:
    template, search = inputs(n)
    boxes = torch.tensor([[0.5, 0.5, 0.3, 0.4], [0.4, 0.6, 0.2, 0.25]])[:n]
    return {"template": template[:, None], "search": search, "search_box": boxes}


def tracker_for(network: DyTrack, thresholds) -> object:  # noqa: ANN001
    tracker = DyTrackTrackerConfig(thresholds=list(thresholds)).build(network.eval())
    tracker.template = inputs(1)[0]
    return tracker


def has_grad(params) -> bool:  # noqa: ANN001
    return any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in params)


def windowed_box(out) -> torch.Tensor:  # noqa: ANN001
    score = out.aux["score_map"] * hann2d(*out.aux["score_map"].shape[-2:])
    return CenterHead.decode(score, out.aux["size_map"], out.aux["offset_map"])[0]


# ------------------------------------------------------------------ layout


@pytest.mark.parametrize("placement,shared,extra", [("joint", True, 1), ("joint", False, 3), ("readout", True, 0)])
def test_token_counts_are_template_search_and_iou_tokens(placement: str, shared: bool, extra: int) -> None:
    net = DyTrack(**{**TINY, "template_size": 128, "search_size": 256, "iou_token": placement,
                     "iou_token_shared": shared})
    state = net.embed(torch.zeros(1, 3, 128, 128), torch.zeros(1, 3, 256, 256))
    assert (state.num_template, state.num_search, state.num_extra) == (64, 256, extra)
    assert state.tokens.shape[1] == 64 + 256 + extra


def test_exits_must_end_at_the_last_block() -> None:
    with pytest.raises(ValueError, match="end at depth"):
        DyTrack(**{**TINY, "exits": (1, 2)})
    with pytest.raises(ValueError, match="readout"):
        DyTrack(**{**TINY, "iou_attends": "search"})


def test_threshold_lists_match_the_shallow_exits() -> None:
    assert exit_thresholds(0.7, 3) == (0.7, 0.7)
    assert exit_thresholds([0.6, 0.8, 0.1], 3) == (0.6, 0.8)  # the deepest exit's value is ignored
    with pytest.raises(ValueError, match="tracker.thresholds"):
        exit_thresholds([0.6, 0.7, 0.8, 0.9], 3)


# ------------------------------------------------------------------ the exit rule


@pytest.mark.parametrize("placement", ["joint", "readout"])
def test_thresholds_never_reached_give_the_deepest_exit_exactly(placement: str) -> None:
    net = tiny(iou_token=placement).eval()
    tracker = tracker_for(net, [NEVER_EXIT, NEVER_EXIT])
    search = inputs(1)[1]
    with torch.inference_mode():
        box, score = tracker.predict(search)
        full = net(tracker.template, search)
    assert tracker.last_exit == net.num_exits - 1
    assert torch.equal(box, windowed_box(full))
    assert score == float(full.aux["iou"][0])


@pytest.mark.parametrize("threshold", [0.0, -math.inf])
def test_a_threshold_every_score_passes_exits_every_frame_at_the_first_exit(threshold: float) -> None:
    net = tiny().eval()
    tracker = tracker_for(net, [threshold, NEVER_EXIT])
    frame = np.random.default_rng(0).integers(0, 255, size=(120, 160, 3), dtype=np.uint8)
    tracker.initialize(frame, np.array([60.0, 40.0, 30.0, 20.0]))
    results = [tracker.track(frame) for _ in range(4)]
    assert [r.extras["exit"] for r in results] == [0.0] * 4
    assert [r.extras["depth"] for r in results] == [1.0] * 4
    assert tracker.exit_counts.tolist() == [4, 0, 0]


def test_the_early_stopped_forward_runs_each_block_once_and_equals_the_full_forward_there() -> None:
    net = tiny().eval()
    calls: list[int] = []
    for i, block in enumerate(net.backbone.blocks):
        block.register_forward_hook(lambda *_, i=i: calls.append(i))
    tracker = tracker_for(net, [NEVER_EXIT, -math.inf])  # answers at the second exit (after 2 blocks)
    search = inputs(1)[1]
    with torch.inference_mode():
        box, _ = tracker.predict(search)
        stopped_calls = list(calls)
        full = net(tracker.template, search).aux["exits"][1]
    assert tracker.last_exit == 1
    assert stopped_calls == [0, 1]  # blocks 0 and 1, once each: no recomputation, nothing past the exit
    assert torch.equal(box, windowed_box(full))


# ------------------------------------------------------------------ recycling


@pytest.mark.parametrize("fusion", ["sum", "concat"])
@pytest.mark.parametrize("schema", SCHEMAS)
def test_zero_initialised_recycling_equals_no_reuse_at_step_0(schema: str, fusion: str) -> None:
    net = tiny(recycling=schema, recycling_fusion=fusion).eval()
    template, search = inputs()
    with torch.no_grad():
        state = net.embed(template, search)
        outputs = net.forward_exits(template, search)
        for k, (_, s) in enumerate(net.run_segments(state, net.exits)):
            alone = net.head(net.finalize(s), exit_index=k)  # no memory: no recycled input
            torch.testing.assert_close(outputs[k].aux["score_map"], alone.aux["score_map"], rtol=1e-6, atol=1e-7)
            torch.testing.assert_close(outputs[k].boxes, alone.boxes, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("detach", [False, True])
def test_the_recycler_learns_and_detach_stops_the_gradient_into_the_reused_features(detach: bool) -> None:
    net = tiny(recycling="cascade", recycling_detach=detach)
    outputs = net.forward_exits(*inputs())
    outputs[1].aux["score_map"].sum().backward()
    fuse = net.recycler.fuse[1]["ctr"][0]
    assert fuse.weight.grad is not None and fuse.weight.grad.abs().sum() > 0  # zero init, yet it learns
    # exit 0's stem reaches exit 1 only through the recycled input
    assert not has_grad(net.box_heads[0].conv1_ctr.parameters())  # zero-initialised fusion: none at step 0
    net.zero_grad()
    with torch.no_grad():
        fuse.weight.fill_(0.1)
    net.forward_exits(*inputs())[1].aux["score_map"].sum().backward()
    assert has_grad(net.box_heads[0].conv1_ctr.parameters()) is (not detach)


# ------------------------------------------------------------------ training losses


def module(network: DyTrack, **kwargs) -> DyTrackTraining:
    return DyTrackTraining(network=network, **kwargs)


@pytest.mark.parametrize("target", ["feature", "relation"])
@pytest.mark.parametrize("mask", ["box", "gaussian"])
def test_the_distillation_sends_no_gradient_into_the_deep_side(target: str, mask: str) -> None:
    net = tiny()
    training = module(net, distillation=Distillation(target=target, mask=mask, background_weight=0.1))
    batch = batch_of()
    kd = training.distillation_losses(training(batch), batch)
    assert kd > 0
    kd.backward()
    last_shallow = net.exits[-2]
    for i, block in enumerate(net.backbone.blocks):
        assert has_grad(block.parameters()) is (i < last_shallow), f"block {i}"
    assert not has_grad([*net.box_heads[-1].parameters(), *net.backbone.norm.parameters()])
    assert net.kd_projectors[0][1].weight.grad.abs().sum() > 0


def test_the_distillation_loss_detaches_any_teacher_it_is_given() -> None:
    student = torch.randn(2, 16, 8, requires_grad=True)
    teacher = torch.randn(2, 16, 8, requires_grad=True)
    for target in ("feature", "relation"):
        self_distillation_loss(student, teacher, torch.ones(2, 16), Distillation(target=target)).backward()
    assert teacher.grad is None and student.grad is not None


def test_the_target_mask_covers_the_box_tokens() -> None:
    mask = target_mask(torch.tensor([[0.5, 0.5, 0.5, 0.5]]), 4, "box").view(4, 4)
    assert mask.tolist() == [[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]]
    gaussian = target_mask(torch.tensor([[0.5, 0.5, 0.5, 0.5]]), 4, "gaussian")
    assert gaussian.max() == 1 and gaussian.min() == 0


@pytest.mark.parametrize("form", ["mse", "l1", "smooth_l1", "bce"])
def test_the_iou_target_carries_no_gradient(form: str) -> None:
    net = tiny()
    batch = batch_of()
    outputs = net.forward_exits(batch["template"][:, 0], batch["search"])
    target = iou_target(outputs[0], batch)
    assert not target.requires_grad and bool(((target >= 0) & (target <= 1)).all())
    iou_score_loss(outputs[0].score, target, form).backward()
    assert not has_grad(net.box_heads[0].parameters())
    assert net.iou_heads[0].mlp[0].weight.grad.abs().sum() > 0


def test_compute_losses_trains_every_exit() -> None:
    net = tiny()
    training = module(net, exit_weights=[0.5, 1.0, 1.0])
    losses = training.compute_losses(batch_of())
    assert {"e0_box", "e1_iou_loss", "e2_iou", "kd", "total"} <= set(losses)
    losses["total"].backward()
    for k in range(net.num_exits):
        assert net.box_heads[k].conv5_ctr.weight.grad.abs().sum() > 0
        assert net.iou_heads[k].mlp[-1].weight.grad.abs().sum() > 0
    with pytest.raises(Exception, match="exit_weights"):
        module(tiny(), exit_weights=[1.0])


# ------------------------------------------------------------------ initialisation


def test_an_ostrack_checkpoint_initialises_every_exit_and_keeps_the_new_parts() -> None:
    torch.manual_seed(3)
    ostrack = OSTrack(embed_dim=32, depth=4, num_heads=2, head_channels=16, template_size=32, search_size=64)
    net = tiny()
    iou_before = net.iou_heads[0].mlp[0].weight.clone()
    load_weights(net, ostrack.state_dict())
    for head in net.box_heads:
        assert torch.equal(head.conv1_ctr[0].weight, ostrack.box_head.conv1_ctr[0].weight)
    assert torch.equal(net.backbone.blocks[3].mlp.fc1.weight, ostrack.backbone.blocks[3].mlp.fc1.weight)
    assert torch.equal(net.iou_heads[0].mlp[0].weight, iou_before)
    load_weights(tiny(), net.state_dict())  # a DyTrack state dict loads as it is (the converter is idempotent)


# ------------------------------------------------------------------ calibration's choice


def test_calibration_points_and_the_pick() -> None:
    from lightning_app.commands.calibrate import CurvePoint, add_speedups, pick, sweep_settings, yaml_list

    settings = sweep_settings(3, [0.8], [[0.5, 0.9]])
    assert [label for label, _ in settings][:3] == ["always exit 0 (first)", "always exit 1 (forced)",
                                                   "always exit 2 (deepest)"]
    assert settings[0][1] == [-math.inf, -math.inf] and settings[2][1] == [NEVER_EXIT, NEVER_EXIT]
    assert settings[1][1] == [NEVER_EXIT, -math.inf] and settings[-1][1] == [0.5, 0.9]

    def point(label: str, auc: float, fps: float, gflops: float) -> CurvePoint:
        return CurvePoint(label, [], auc, fps, gflops, 0.0, [])

    deepest = point("deepest", 60.0, 100.0, 1.0)
    points = [point("first", 40.0, 400.0, 0.2), point("a", 59.5, 150.0, 0.7), point("b", 58.0, 250.0, 0.4), deepest]
    add_speedups(points, deepest)
    assert pick(points, deepest, 1.0, None, "fps").label == "a"  # fastest within 1 AUC point
    assert pick(points, deepest, 3.0, None, "flops").label == "b"
    assert pick(points, deepest, None, 2.0, "fps").label == "b"  # most accurate at >= 2x
    assert pick(points, deepest, None, 10.0, "fps") is None
    assert yaml_list([math.inf, -math.inf, 0.85]) == "[2, 0, 0.85]"  # the command line refuses inf
