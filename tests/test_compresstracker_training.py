"""CompressTracker training: stages and init, the hybrid path, teacher freezing, the stage swap and its
resume, export to the official layout, and the same method on a MixFormerV2 teacher (tiny models)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from callbacks.stochastic_stage_swap import StochasticStageSwap, draw_stage_mask
from conftest import fixtures_root
from trackers.errors import SetupError
from trackers.methods.compresstracker import CompressLossWeights, CompressTracker, CompressTrackerMixFormer
from trackers.models.checkpoints import load_weights
from trackers.models.compresstracker import build_student, export_official_checkpoint, stage_ranges
from trackers.models.mixformerv2 import MixFormerV2
from trackers.models.ostrack import OSTrack
from trackers.safe_unpickling import load_checkpoint_data

TINY = dict(embed_dim=32, num_heads=2, template_size=32, search_size=64, head_channels=16)


def tiny_batch(b: int = 2, templates: int = 1, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "template": torch.randn(b, templates, 3, 32, 32, generator=g),
        "template_box": torch.tensor([0.5, 0.5, 0.5, 0.5]).expand(b, templates, 4).clone(),
        "search": torch.randn(b, 3, 64, 64, generator=g),
        "search_box": torch.cat([0.4 + 0.2 * torch.rand(b, 2, generator=g), 0.2 + 0.2 * torch.rand(b, 2, generator=g)], 1),
        "search_visible": torch.ones(b, dtype=torch.bool),
    }


def loader(n: int = 4, templates: int = 1) -> DataLoader:
    return DataLoader([tiny_batch(templates=templates, seed=i) for i in range(n)], batch_size=None)


def teacher_file(tmp_path: Path, depth: int = 6, seed: int = 0, **kw) -> tuple[OSTrack, str]:
    torch.manual_seed(seed)
    teacher = OSTrack(depth=depth, drop_path_rate=0.1, **{**TINY, **kw})
    path = tmp_path / "teacher.pt"
    torch.save(teacher.state_dict(), path)
    return teacher, str(path)


def ct_module(tmp_path: Path, student_depth: int = 3, teacher_depth: int = 6, **kw) -> CompressTracker:
    _, path = teacher_file(tmp_path, teacher_depth)
    return CompressTracker(
        network=build_student(student_depth, teacher_depth, 0.1, **TINY),
        teacher=OSTrack(depth=teacher_depth, drop_path_rate=0.1, **TINY),
        teacher_checkpoint=path,
        **kw,
    )


def fit_setup(module):
    """What ``Trainer.fit`` does before the first step: the method's TeacherFreeze, then ``setup("fit")``."""
    for callback in module.configure_callbacks():
        callback.setup(None, module, "fit")
    module._trainer = SimpleNamespace(datamodule=None, callbacks=[])
    module.setup("fit")
    module._trainer = None
    return module


def trainer(tmp_path: Path, callbacks=(), **kw) -> L.Trainer:
    args = dict(
        accelerator="cpu", devices=1, max_epochs=2, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path),
    )  # fmt: skip
    return L.Trainer(callbacks=list(callbacks), **{**args, **kw})


class MaskRecorder(L.Callback):
    def __init__(self) -> None:
        self.masks: list[tuple[bool, ...]] = []
        self.p: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.masks.append(pl_module.stage_mask)
        self.p.append(pl_module.replacement_p)


# ------------------------------------------------------------------ stages and initialisation


def test_even_and_explicit_stage_division():
    assert [list(r) for r in stage_ranges(12, 4)] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]
    assert [list(r) for r in stage_ranges(12, 4, [2, 4, 10, 12])] == [[0, 1], [2, 3], [4, 5, 6, 7, 8, 9], [10, 11]]
    for bad in ([2, 4, 12], [4, 2, 10, 12], [2, 4, 10, 11]):
        with pytest.raises(SetupError, match="stage_ends"):
            stage_ranges(12, 4, bad)


@pytest.mark.parametrize("init, source", [("last", [1, 3, 5]), ("first", [0, 2, 4]), ("random", None)])
def test_student_blocks_start_from_the_chosen_teacher_block_and_the_rest_from_the_teacher(tmp_path, init, source):
    module = ct_module(tmp_path, student_init=init)
    own = [b.attn.qkv.weight.clone() for b in module.network.backbone.blocks]
    fit_setup(module)
    teacher, student = module.teacher, module.network
    for i, block in enumerate(student.backbone.blocks):
        expected = own[i] if source is None else teacher.backbone.blocks[source[i]].attn.qkv.weight
        assert torch.equal(block.attn.qkv.weight, expected)
    for name in ("patch_embed.proj.weight", "pos_embed_x", "norm.weight"):
        assert torch.equal(student.backbone.state_dict()[name], teacher.backbone.state_dict()[name])
    assert torch.equal(student.box_head.conv5_ctr.weight, teacher.box_head.conv5_ctr.weight)


def test_explicit_stage_ends_pick_their_init_blocks_and_a_different_width_is_refused(tmp_path):
    module = fit_setup(ct_module(tmp_path, stage_ends=[1, 2, 6]))
    for i, src in enumerate([0, 1, 5]):
        assert torch.equal(module.network.backbone.blocks[i].mlp.fc1.weight, module.teacher.backbone.blocks[src].mlp.fc1.weight)
    _, path = teacher_file(tmp_path, 6)
    wide = CompressTracker(network=build_student(3, 6, **{**TINY, "embed_dim": 64}),
                           teacher=OSTrack(depth=6, **TINY), teacher_checkpoint=path)
    with pytest.raises(SetupError, match="width"):
        fit_setup(wide)


# ------------------------------------------------------------------ hybrid path and gradients


def test_a_teacher_stage_runs_the_teachers_blocks_on_the_students_tokens(tmp_path):
    module = fit_setup(ct_module(tmp_path)).eval()
    batch = tiny_batch()
    net, teacher = module.network, module.teacher
    with torch.no_grad():
        out, ends, _ = module.replacement_forward(batch, [True, False, True])
        state = net.embed(batch["template"][:, 0], batch["search"])
        state = net.backbone.run_blocks(state, 0, 1)
        state = teacher.backbone.run_blocks(state, 2, 4)  # stage 1 = teacher blocks 2, 3
        assert torch.equal(ends[1], state.tokens)
        state = net.backbone.run_blocks(state, 2, 3)
        assert torch.equal(out.boxes, net.head(net.finalize(state)).boxes)
        pure, _, _ = module.replacement_forward(batch, None)
        assert torch.equal(pure.boxes, net(batch["template"][:, 0], batch["search"]).boxes)


def test_replaced_blocks_get_zero_gradients_and_earlier_stages_learn_through_the_teacher(tmp_path):
    module = fit_setup(ct_module(tmp_path)).train()
    module.has_teacher_weights = True
    module.stage_mask = (True, False, False)
    module.compute_losses(tiny_batch())["total"].backward()
    blocks = module.network.backbone.blocks
    assert all(p.grad is not None and not p.grad.any() for b in blocks[1:] for p in b.parameters())
    assert any(p.grad.abs().sum() > 0 for p in blocks[0].parameters())
    assert module.network.backbone.patch_embed.proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in module.teacher.parameters())


def test_ground_truth_only_arm_never_runs_the_teacher(tmp_path, monkeypatch):
    module = fit_setup(ct_module(tmp_path, loss_weights=CompressLossWeights(guidance=0.0, feature=0.0))).train()
    monkeypatch.setattr(module, "teacher_outputs", lambda batch: pytest.fail("the teacher ran"))
    losses = module.compute_losses(tiny_batch())
    assert "guidance" not in losses and torch.isfinite(losses["total"])


# ------------------------------------------------------------------ teacher freezing


def test_train_mode_teacher_varies_between_calls_while_its_weights_stay_bitwise_equal(tmp_path):
    module = ct_module(tmp_path, teacher_mode="train")
    recorder = []

    class TeacherProbe(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):  # noqa: ANN001
            a, _ = pl_module.teacher_outputs(batch)
            b, _ = pl_module.teacher_outputs(batch)
            recorder.append((pl_module.teacher.training, (a.aux["backbone_feat"] - b.aux["backbone_feat"]).abs().max()))

    swap = StochasticStageSwap(seed=0)
    t = trainer(tmp_path, [swap, TeacherProbe()], max_epochs=1)
    t.fit(module, train_dataloaders=loader(3))
    before = torch.load(module.teacher_checkpoint, weights_only=True)
    after = module.teacher.state_dict()
    params = {n for n, _ in module.teacher.named_parameters()}
    assert all(torch.equal(before[k], after[k]) for k in params)
    assert all(training and diff > 0 for training, diff in recorder)  # DropPath active in the frozen teacher
    teacher_ids = {id(p) for p in module.teacher.parameters()}
    assert not any(id(p) in teacher_ids for g in t.optimizers[0].param_groups for p in g["params"])
    saved = t._checkpoint_connector.dump_checkpoint()["state_dict"]  # what a checkpoint file holds, after the hooks
    assert saved and all(k.startswith("network.") for k in saved)


def test_eval_mode_teacher_is_deterministic_and_pinned(tmp_path):
    module = ct_module(tmp_path)
    t = trainer(tmp_path, [StochasticStageSwap(seed=0)], max_epochs=1)
    t.fit(module, train_dataloaders=loader(2))
    assert not module.teacher.training
    batch = tiny_batch()
    a, _ = module.teacher_outputs(batch)
    b, _ = module.teacher_outputs(batch)
    assert torch.equal(a.boxes, b.boxes)


# ------------------------------------------------------------------ stage swap


def test_draws_never_give_the_all_teacher_path_officially():
    g = torch.Generator().manual_seed(0)
    masks = [draw_stage_mask(3, 0.5, g) for _ in range(300)]
    assert all(any(m) for m in masks) and len(set(masks)) == 7
    g = torch.Generator().manual_seed(0)
    independent = [draw_stage_mask(3, 0.5, g, "independent") for _ in range(300)]
    assert (False, False, False) in independent
    g = torch.Generator().manual_seed(0)
    assert all(sum(draw_stage_mask(3, 0.3, g)) == 1 for _ in range(50))  # official p < 0.5 branch


def test_the_callback_writes_the_schedule_and_a_mask_per_step(tmp_path):
    recorder = MaskRecorder()
    module = ct_module(tmp_path)
    trainer(tmp_path, [StochasticStageSwap(seed=0), recorder], max_epochs=3).fit(module, train_dataloaders=loader(4))
    assert recorder.p == pytest.approx([0.5] * 4 + [5 / 6] * 4 + [1.0] * 4)  # 3 epochs: w = e = 0; p(3) = 1
    assert len(set(recorder.masks[:8])) > 1 and all(m == (True,) * 3 for m in recorder.masks[8:])
    assert module.stage_mask is None  # validation and tracking: pure student


def test_a_resumed_run_draws_the_masks_of_an_uninterrupted_run(tmp_path):
    full = MaskRecorder()
    trainer(tmp_path / "a", [StochasticStageSwap(seed=5), full], max_epochs=3).fit(
        ct_module(tmp_path), train_dataloaders=loader(4))
    first = MaskRecorder()
    t = trainer(tmp_path / "b", [StochasticStageSwap(seed=5), first], max_epochs=1)
    t.fit(ct_module(tmp_path), train_dataloaders=loader(4))
    checkpoint = t._checkpoint_connector.dump_checkpoint()  # what ModelCheckpoint writes at the epoch end
    checkpoint.pop("hyper_parameters")  # Python-built dataclass arguments (a CLI run saves them as plain config)
    torch.save(checkpoint, tmp_path / "epoch1.ckpt")
    resumed = MaskRecorder()
    trainer(tmp_path / "b", [StochasticStageSwap(seed=5), resumed], max_epochs=3).fit(
        ct_module(tmp_path), train_dataloaders=loader(4), ckpt_path=str(tmp_path / "epoch1.ckpt"))
    assert first.masks + resumed.masks == full.masks


# ------------------------------------------------------------------ export and structure-agnosticism


def test_trained_student_exports_to_the_official_deployable_layout_and_reads_back_strictly(tmp_path):
    """The export of a 2-block student has exactly the official CT-2 test model's keys and shapes (parity fixture)."""
    fixture = next(d for d in sorted((fixtures_root() / "parity").iterdir())
                   if (d / "meta.json").is_file() and json.loads((d / "meta.json").read_text())["family"] == "compresstracker")
    official = load_checkpoint_data(fixture / "checkpoint.pth.tar")["net"]
    meta = json.loads((fixture / "meta.json").read_text())
    width = meta["backbone_args"]["EMBED_DIM"]
    kw = dict(embed_dim=width, num_heads=meta["backbone_args"]["NUM_HEADS"], template_size=128, search_size=256,
              head_channels=meta["config"]["MODEL.HEAD.NUM_CHANNELS"])
    torch.manual_seed(0)
    teacher = OSTrack(depth=4, **kw)
    torch.save(teacher.state_dict(), tmp_path / "t.pt")
    module = CompressTracker(network=build_student(2, 4, **kw), teacher=OSTrack(depth=4, **kw),
                             teacher_checkpoint=str(tmp_path / "t.pt"))
    batches = DataLoader([{**tiny_batch(1), "template": torch.randn(1, 1, 3, 128, 128), "search": torch.randn(1, 3, 256, 256)}],
                         batch_size=None)
    t = trainer(tmp_path, [StochasticStageSwap(seed=0)], max_epochs=1)
    t.fit(module, train_dataloaders=batches)
    saved = t._checkpoint_connector.dump_checkpoint()["state_dict"]  # a .ckpt file: tests/test_compresstracker_cli.py
    student = {k.removeprefix("network."): v for k, v in saved.items()}
    out = export_official_checkpoint(student, tmp_path / "CompressTracker_ep0001.pth.tar")
    exported = load_checkpoint_data(out)["net"]
    assert {k: tuple(v.shape) for k, v in exported.items()} == {k: tuple(v.shape) for k, v in official.items()}
    fresh = build_student(2, 4, **kw)
    load_weights(fresh, out)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), module.network.state_dict().values()))
    with pytest.raises(SetupError, match="deployable"):
        export_official_checkpoint({"ori_backbone.norm.weight": torch.ones(1)}, tmp_path / "x.pth.tar")


def test_the_same_method_compresses_a_mixformerv2_teacher(tmp_path):
    v2 = dict(embed_dim=32, num_heads=2, template_size=32, search_size=64, num_bins=16, score_head=False)
    torch.manual_seed(0)
    torch.save(MixFormerV2(depth=4, drop_path_rate=0.1, **v2).state_dict(), tmp_path / "v2.pt")
    module = CompressTrackerMixFormer(network=MixFormerV2(depth=2, drop_path_rate=0.0, **v2),
                                      teacher=MixFormerV2(depth=4, drop_path_rate=0.1, **v2),
                                      teacher_checkpoint=str(tmp_path / "v2.pt"))
    fit_setup(module)
    assert torch.equal(module.network.backbone.blocks[1].mlp.fc2.weight, module.teacher.backbone.blocks[3].mlp.fc2.weight)
    student, teacher = module.network.state_dict(), module.teacher.state_dict()
    heads = [k for k in student if k.startswith("box_head.")]
    assert heads and all(torch.equal(student[k], teacher[k]) for k in heads)
    recorder = MaskRecorder()
    t = trainer(tmp_path, [StochasticStageSwap(seed=0), recorder], max_epochs=1)
    t.fit(module, train_dataloaders=loader(3, templates=2))
    assert len(recorder.masks) == 3 and all(len(m) == 2 for m in recorder.masks)
    module.has_teacher_weights = True
    module.train()
    module.stage_mask = (False, True)
    losses = module.compute_losses(tiny_batch(templates=2))
    assert {"ciou", "guidance", "feature"} <= set(losses) and torch.isfinite(losses["total"])
