"""MixFormerV2 methods: stage-1 / stage-2 / score-head steps, checkpoint chaining, the cached tracker."""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from callbacks.layer_decay import LayerDecay
from trackers.errors import SetupError
from trackers.inference.mixformerv2_tracker import MixFormerTrackerConfig
from trackers.methods.distillation import FeaturePairs
from trackers.methods.mixformerv2 import (
    DeepToShallowDistillation,
    DenseToSparseDistillation,
    DistillLossWeights,
    ScoreHeadTraining,
)
from trackers.models.mixformerv2 import MixFormerV2
from trackers.models.mixvit import MixViT
from trackers.nn.pos_embed import sincos_2d_table

TINY = dict(embed_dim=32, num_heads=2, template_size=32, search_size=64, drop_path_rate=0.0)
BINS = 16  # = 64 / stride 4, the tiny MixViT's corner-map side


def tiny_v2(depth: int = 4, **kw) -> MixFormerV2:
    return MixFormerV2(**{**TINY, "depth": depth, "num_bins": BINS, "score_head": False, **kw})


def saved(module: torch.nn.Module, path: Path) -> str:
    torch.save(module.state_dict(), path)
    return str(path)


def tiny_batch(b: int = 2, t: int = 32, s: int = 64, visible: list[bool] | None = None) -> dict:
    g = torch.Generator().manual_seed(0)
    centre = 0.4 + 0.2 * torch.rand(b, 2, generator=g)
    size = 0.2 + 0.2 * torch.rand(b, 2, generator=g)
    return {
        "template": torch.randn(b, 2, 3, t, t, generator=g),
        "template_box": torch.tensor([0.5, 0.5, 0.5, 0.5]).expand(b, 2, 4).clone(),
        "search": torch.randn(b, 3, s, s, generator=g),
        "search_box": torch.cat([centre, size], dim=1),
        "search_visible": torch.tensor(visible if visible is not None else [True] * b),
    }


def fit_setup(module):
    """What ``Trainer.fit`` does before the first step: ``setup("fit")`` reads teacher and initial weights."""
    module._trainer = SimpleNamespace(datamodule=None)  # what setup asks of the trainer
    module.setup("fit")
    module._trainer = None
    return module


def stage2_module(tmp_path: Path, depth: int = 4, pairs=([1, 3], [1, 3]), **kw) -> DeepToShallowDistillation:
    """A stage-2 module as built from a config (no weights read yet); ``fit_setup`` reads them."""
    teacher_ckpt = saved(tiny_v2(depth), tmp_path / "teacher.pt")
    return DeepToShallowDistillation(
        network=tiny_v2(depth), teacher_checkpoint=teacher_ckpt, feature_pairs=FeaturePairs(*map(list, pairs)), **kw
    )


def grads_only_in_student(module: torch.nn.Module) -> None:
    teacher = [n for n, p in module.teacher.named_parameters() if p.grad is not None]
    student = [n for n, p in module.network.named_parameters() if p.grad is not None]
    assert not teacher, f"teacher got gradients: {teacher[:3]}"
    assert student


# --------------------------------------------------------------------------------- stage 1


def test_stage1_step_finite_losses_gradients_only_in_student(tmp_path):
    teacher = MixViT(**{**TINY, "depth": 2}, head_type="CORNER_UP", head_channels=16)
    module = fit_setup(DenseToSparseDistillation(
        network=tiny_v2(4), teacher=teacher, teacher_checkpoint=saved(teacher, tmp_path / "mixvit.pt"),
        loss_weights=DistillLossWeights(feature=0.0),
    ))  # fmt: skip
    batch = tiny_batch()
    losses = module.compute_losses(batch)
    assert {"ciou", "l1", "logit", "total"} <= set(losses) and "feature" not in losses
    assert all(torch.isfinite(v) for v in losses.values())
    expected = 2 * losses["ciou"] + 5 * losses["l1"] + 5 * losses["logit"]
    torch.testing.assert_close(losses["total"], expected)
    losses["total"].backward()
    grads_only_in_student(module)
    assert module.network.backbone.reg_tokens.grad is not None


def test_stage1_rejects_bins_that_do_not_match_the_teacher_map(tmp_path):
    teacher = MixViT(**{**TINY, "depth": 2}, head_type="CORNER_UP", head_channels=16)
    with pytest.raises(SetupError, match="num_bins"):
        DenseToSparseDistillation(
            network=tiny_v2(2, num_bins=BINS + 1), teacher=teacher, teacher_checkpoint=saved(teacher, tmp_path / "t.pt")
        )


def test_stage1_student_without_bins_takes_the_teacher_map_side(tmp_path):
    teacher = MixViT(**{**TINY, "depth": 2}, head_type="CORNER_UP", head_channels=16)
    module = fit_setup(DenseToSparseDistillation(
        network=tiny_v2(2, num_bins=None), teacher=teacher, teacher_checkpoint=saved(teacher, tmp_path / "t.pt")
    ))  # fmt: skip
    assert module.network.num_bins == teacher.feat_size == BINS
    assert torch.isfinite(module.compute_losses(tiny_batch())["total"])


def test_stage1_student_may_start_from_the_teacher_backbone(tmp_path):
    teacher = MixViT(**{**TINY, "depth": 2}, head_type="CORNER_UP", head_channels=16)
    module = DenseToSparseDistillation(
        network=tiny_v2(3), teacher=teacher, teacher_checkpoint=saved(teacher, tmp_path / "mixvit.pt"),
        pretrained="teacher",
    )
    student, frozen_teacher = module.network.backbone, module.teacher.backbone
    assert not torch.equal(student.blocks[0].attn.qkv.weight, frozen_teacher.blocks[0].attn.qkv.weight)
    tables = student.pos_embed_s.clone()
    fit_setup(module)
    for name, value in frozen_teacher.state_dict().items():
        if name.startswith(("blocks.", "patch_embed.")):
            torch.testing.assert_close(student.state_dict()[name], value, msg=name)
    assert not torch.equal(student.blocks[2].attn.qkv.weight, student.blocks[1].attn.qkv.weight)  # beyond: own init
    torch.testing.assert_close(student.pos_embed_s, tables)  # fixed sin-cos tables stay


def test_missing_teacher_checkpoint_names_key_and_producing_stage_when_fitting_starts(tmp_path):
    module = DeepToShallowDistillation(network=tiny_v2(4))  # building (for test / validate / track) needs no file
    with pytest.raises(SetupError, match=r"model\.init_args\.teacher_checkpoint.*mixformerv2_b_stage1\.yaml"):
        fit_setup(module)
    module = DeepToShallowDistillation(network=tiny_v2(4), teacher_checkpoint=str(tmp_path / "nope.ckpt"))
    with pytest.raises(SetupError, match=r"model\.init_args\.teacher_checkpoint.*does not exist"):
        fit_setup(module)


def test_weights_are_read_when_fitting_starts_not_at_construction(tmp_path):
    teacher = tiny_v2(4)
    module = DeepToShallowDistillation(network=tiny_v2(4), teacher_checkpoint=saved(teacher, tmp_path / "t.pt"))
    qkv = lambda net: net.backbone.blocks[0].attn.qkv.weight  # noqa: E731
    assert not torch.equal(qkv(module.teacher), qkv(teacher))
    module._trainer = SimpleNamespace(datamodule=None)
    module.setup("test")  # test reads nothing
    assert not module.has_teacher_weights
    fit_setup(module)
    assert module.has_teacher_weights
    for source in (module.teacher, module.network):  # the student starts as a copy of the teacher
        assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), teacher.state_dict().values()))


# --------------------------------------------------------------------------------- stage 2


def test_stage2_student_starts_as_copy_of_teacher(tmp_path):
    module = fit_setup(stage2_module(tmp_path))
    teacher, student = module.teacher.state_dict(), module.network.state_dict()
    assert teacher.keys() == student.keys()
    assert all(torch.equal(teacher[k], student[k]) for k in teacher)


def test_stage2_step_with_fading_blocks(tmp_path):
    module = fit_setup(stage2_module(tmp_path))
    LayerDecay(blocks=[0, 2], decay_epochs=4).setup(None, module, "fit")  # freezes the fading blocks
    module.layer_gamma = {0: 0.5, 2: 0.5}
    losses = module.compute_losses(tiny_batch())
    assert {"ciou", "l1", "logit", "feature", "total"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    losses["total"].backward()
    grads_only_in_student(module)
    blocks = module.network.backbone.blocks
    assert all(p.grad is None for i in (0, 2) for p in blocks[i].parameters())
    assert all(p.grad is not None for i in (1, 3) for p in blocks[i].parameters())
    # a copy of the teacher at gamma = 1 has nothing to learn from the teacher
    module.layer_gamma = {}
    again = module.compute_losses(tiny_batch())
    assert float(again["feature"].detach()) < 1e-10 and float(again["logit"].detach()) < 1e-5


@pytest.mark.parametrize("gamma_mode", ["branch", "block"])
def test_pruned_student_equals_gamma_zero_student(tmp_path, gamma_mode):
    teacher_ckpt = saved(tiny_v2(4, gamma_mode=gamma_mode), tmp_path / "t.pt")
    module = fit_setup(DeepToShallowDistillation(
        network=tiny_v2(4, gamma_mode=gamma_mode), teacher_checkpoint=teacher_ckpt,
        feature_pairs=FeaturePairs([1, 3], [1, 3]),
    ))  # fmt: skip
    module.eval()
    batch = tiny_batch()
    module.layer_gamma = {0: 0.0, 2: 0.0}
    faded = module(batch)
    module.prune_blocks([0, 2])
    assert module.network.backbone.depth == 2
    assert module.feature_pairs == FeaturePairs([0, 1], [1, 3])
    pruned = module(batch)
    torch.testing.assert_close(pruned.boxes, faded.boxes, rtol=0, atol=1e-6)
    for side in "lrtb":
        torch.testing.assert_close(pruned.aux[f"prob_{side}"], faded.aux[f"prob_{side}"], rtol=0, atol=1e-5)
    torch.testing.assert_close(pruned.features[0], faded.features[1], rtol=0, atol=1e-5)


def test_checkpoint_after_pruning_restores_into_a_fresh_module_without_the_teacher_file(tmp_path):
    module = fit_setup(stage2_module(tmp_path))
    module.prune_blocks([0, 2])
    checkpoint = {"state_dict": {k: v for k, v in module.state_dict().items() if not k.startswith("teacher.")}}
    module.on_save_checkpoint(checkpoint)
    (tmp_path / "teacher.pt").unlink()  # evaluation of the checkpoint needs no teacher
    fresh = DeepToShallowDistillation(
        network=tiny_v2(4), teacher_checkpoint=str(tmp_path / "teacher.pt"), feature_pairs=FeaturePairs([1, 3], [1, 3])
    )
    fresh.on_load_checkpoint(checkpoint)
    fresh.load_state_dict(checkpoint["state_dict"], strict=True)
    assert fresh.network.backbone.depth == 2 and fresh.feature_pairs == module.feature_pairs
    assert fresh.teacher.backbone.depth == 4  # the (unused) teacher keeps its architecture
    student = {k: v for k, v in module.network.state_dict().items()}
    assert all(torch.equal(v, student[k]) for k, v in fresh.network.state_dict().items())


LINEAGE_BINS = 12  # a checkpoint's bins that no default or map side gives


def test_stage2_without_bins_takes_them_from_its_checkpoints_at_fit_start_and_on_restore(tmp_path):
    teacher_ckpt = saved(tiny_v2(4, num_bins=LINEAGE_BINS), tmp_path / "stage1.pt")
    build = lambda: DeepToShallowDistillation(network=tiny_v2(4, num_bins=None), teacher_checkpoint=teacher_ckpt)  # noqa: E731
    module = build()
    assert module.network.num_bins is None and module.teacher.num_bins is None
    fit_setup(module)
    assert module.network.num_bins == module.teacher.num_bins == LINEAGE_BINS
    assert torch.isfinite(module.compute_losses(tiny_batch())["total"])
    optimizer = module.configure_optimizers()["optimizer"]  # Lightning builds it after setup
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert {id(p) for p in module.network.box_head.parameters()} <= in_optimizer

    checkpoint = {"state_dict": {k: v for k, v in module.state_dict().items() if not k.startswith("teacher.")}}
    (tmp_path / "stage1.pt").unlink()  # `lightning test --ckpt_path` needs no teacher file
    fresh = build()
    fresh.on_load_checkpoint(checkpoint)
    fresh.load_state_dict(checkpoint["state_dict"], strict=True)
    assert fresh.network.num_bins == fresh.teacher.num_bins == LINEAGE_BINS
    torch.testing.assert_close(fresh.network.box_head.state_dict(), module.network.box_head.state_dict())


def test_stage2_refuses_a_student_checkpoint_whose_bins_differ_from_the_given_teacher(tmp_path):
    module = DeepToShallowDistillation(
        network=tiny_v2(4, num_bins=None), teacher=tiny_v2(4), teacher_checkpoint=saved(tiny_v2(4), tmp_path / "t.pt"),
        init_checkpoint=saved(tiny_v2(4, num_bins=LINEAGE_BINS), tmp_path / "s.pt"),
    )  # fmt: skip
    with pytest.raises(SetupError, match=f"student num_bins {LINEAGE_BINS} != teacher num_bins {BINS}"):
        fit_setup(module)


def test_mlp_reduction_slices_teacher_mlps_and_regenerates_tables(tmp_path):
    teacher = tiny_v2(2, mlp_ratio=4.0)
    student_net = tiny_v2(2, mlp_ratio=1.0, template_size=16, search_size=48, num_bins=BINS)
    module = fit_setup(DeepToShallowDistillation(
        network=student_net,
        teacher=tiny_v2(2, mlp_ratio=4.0, template_size=16, search_size=48),
        teacher_checkpoint=saved(teacher, tmp_path / "t.pt"),
        init_reduce_mlp=True,
        feature_pairs=FeaturePairs([0, 1], [0, 1]),
    ))
    hidden = 32
    for tb, sb in zip(teacher.backbone.blocks, module.network.backbone.blocks):
        assert sb.mlp.fc1.weight.shape == (hidden, 32)
        assert torch.equal(sb.mlp.fc1.weight, tb.mlp.fc1.weight[:hidden])
        assert torch.equal(sb.mlp.fc1.bias, tb.mlp.fc1.bias[:hidden])
        assert torch.equal(sb.mlp.fc2.weight, tb.mlp.fc2.weight[:, :hidden])
        assert torch.equal(sb.mlp.fc2.bias, tb.mlp.fc2.bias)
        assert torch.equal(sb.attn.qkv.weight, tb.attn.qkv.weight)
    assert torch.equal(module.network.backbone.pos_embed_s, sincos_2d_table((3, 3), 32))
    losses = module.compute_losses(tiny_batch(t=16, s=48))
    assert all(torch.isfinite(v) for v in losses.values())


# --------------------------------------------------------------------------------- score head


def test_score_stage_trains_only_the_score_head(tmp_path):
    distilled = tiny_v2(2)  # no score head in the checkpoint: it starts at its init
    module = ScoreHeadTraining(network=tiny_v2(2, score_head=True), init_checkpoint=saved(distilled, tmp_path / "d.pt"))
    fit_setup(module)
    for name, value in distilled.state_dict().items():
        assert torch.equal(module.network.state_dict()[name], value)
    assert {n for n, p in module.network.named_parameters() if p.requires_grad} == {
        n for n, _ in module.network.named_parameters() if n.startswith("score_head.")
    }
    losses = module.compute_losses(tiny_batch(b=4, visible=[True, False, True, False]))
    assert torch.isfinite(losses["score"])
    losses["total"].backward()
    assert all((p.grad is not None) == n.startswith("score_head.") for n, p in module.network.named_parameters())
    optimizer = module.configure_optimizers()["optimizer"]
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert in_optimizer == {id(p) for p in module.network.score_head.parameters()}


def test_score_stage_without_bins_takes_them_from_its_init_checkpoint_and_from_a_restored_one(tmp_path):
    init = saved(tiny_v2(2, num_bins=LINEAGE_BINS), tmp_path / "d.pt")
    module = fit_setup(ScoreHeadTraining(network=tiny_v2(2, score_head=True, num_bins=None), init_checkpoint=init))
    assert module.network.num_bins == LINEAGE_BINS
    trainable = {n for n, p in module.network.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("score_head.") for n in trainable)  # the new box head is frozen too

    fresh = ScoreHeadTraining(network=tiny_v2(2, score_head=True, num_bins=None))
    checkpoint = {"state_dict": module.state_dict()}
    fresh.on_load_checkpoint(checkpoint)
    fresh.load_state_dict(checkpoint["state_dict"], strict=True)
    assert fresh.network.num_bins == LINEAGE_BINS
    assert not any(p.requires_grad for p in fresh.network.box_head.parameters())


def test_score_stage_requires_init_checkpoint_when_fitting_starts():
    module = ScoreHeadTraining(network=tiny_v2(2, score_head=True))
    with pytest.raises(SetupError, match=r"model\.init_args\.init_checkpoint.*mixformerv2_b\.yaml"):
        fit_setup(module)


def test_score_stage_frozen_backbone_keeps_drop_path_in_train_mode():
    module = ScoreHeadTraining(network=tiny_v2(2, score_head=True, drop_path_rate=0.1))
    module.train()
    assert module.network.backbone.training and module.network.backbone.blocks[1].drop_path.training
    assert not any(p.requires_grad for p in module.network.backbone.parameters())


# --------------------------------------------------------------------------------- tracker


def _frames(n: int = 9, size: tuple[int, int] = (96, 128)) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    frames = []
    for i in range(n):
        frame = rng.integers(0, 60, size=(*size, 3), dtype=np.uint8)
        x, y = 30 + 3 * i, 30 + 2 * i
        frame[y : y + 20, x : x + 24] = (220, 80, 40)
        frames.append(frame)
    return frames


def _track(network: MixFormerV2, cache: bool, frames: list[np.ndarray]) -> tuple[np.ndarray, list]:
    config = MixFormerTrackerConfig(
        template_size=32, search_size=64, search_factor=4.0, update_interval=3, update_intervals={},
        score_threshold=0.0, use_template_cache=cache,
    )  # fmt: skip
    tracker = config.build(network)
    tracker.initialize(frames[0], np.array([30.0, 30.0, 24.0, 20.0]))
    results = [tracker.track(f) for f in frames[1:]]
    return np.stack([r.box for r in results]), [tracker.online_template is tracker.initial_template]


def test_cached_template_tracker_matches_full_forward():
    torch.manual_seed(0)
    network = tiny_v2(3, score_head=True).eval()
    frames = _frames()
    cached, (cached_initial,) = _track(network, True, frames)
    full, (full_initial,) = _track(network, False, frames)
    np.testing.assert_allclose(cached, full, rtol=0, atol=1e-4)
    assert not cached_initial and not full_initial  # the online template was updated along the way
    assert np.ptp(cached[:, 0]) > 0  # the boxes are not all the same


@pytest.mark.parametrize("visible", [[True, True], [True, False]])
def test_score_stage_warns_after_an_epoch_without_negatives(tmp_path, visible):
    import lightning as L
    from torch.utils.data import DataLoader

    module = ScoreHeadTraining(network=tiny_v2(2, score_head=True), init_checkpoint=saved(tiny_v2(2), tmp_path / "d.pt"))
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    loader = DataLoader([tiny_batch(visible=visible), tiny_batch(visible=[True, True])], batch_size=None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(module, train_dataloaders=loader)
    warned = any("saw no negative pair" in str(w.message) for w in caught)
    assert warned == all(visible)
