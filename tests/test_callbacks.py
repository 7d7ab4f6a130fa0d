"""TeacherFreeze (teacher modes, from configure_callbacks) and LayerDecay (progressive depth pruning), and the schedule."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from callbacks.layer_decay import LayerDecay
from callbacks.schedules import layer_decay_gamma
from callbacks.teacher_freeze import TeacherFreeze
from test_mixformerv2_methods import fit_setup, stage2_module, tiny_batch
from trackers.methods.mixformer_family import mixformer_forward
from trackers.methods.optim import ParamGroups

OFFICIAL_GAMMA = {1: 0.99384, 2: 0.98618, 5: 0.94550, 10: 0.82472, 20: 0.46077, 30: 0.11980, 38: 0.00154, 39: 0.0, 45: 0.0}
"""Spec mixformerv2.md §4.2: gamma per 1-based epoch, m = 40."""


# --------------------------------------------------------------------------------- schedule


def test_official_layer_decay_matches_spec_table():
    for epoch, gamma in OFFICIAL_GAMMA.items():
        assert layer_decay_gamma(epoch, 40) == pytest.approx(gamma, abs=5e-6), epoch
    assert LayerDecay(blocks=[0], decay_epochs=40).gamma(39) == 0.0


def test_paper_layer_decay_reaches_zero_at_m():
    assert layer_decay_gamma(39, 40, official=False) > 0.0
    assert layer_decay_gamma(40, 40, official=False) == 0.0
    assert layer_decay_gamma(1, 40, official=False) == pytest.approx(0.5 * (1 + torch.cos(torch.tensor(torch.pi / 40)).item()))


# --------------------------------------------------------------------------------- LayerDecay in a run


class _GammaRecorder(L.Callback):
    def __init__(self) -> None:
        self.gammas: dict[int, dict[int, float]] = {}
        self.depths: dict[int, int] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        epoch = trainer.current_epoch + 1
        self.gammas[epoch] = dict(pl_module.layer_gamma)
        self.depths[epoch] = pl_module.network.backbone.depth


def _fit(
    module, decay: LayerDecay | None, epochs: int, recorder: L.Callback | None = None, listed: tuple = (TeacherFreeze(),)
) -> tuple[L.Callback, L.Trainer]:
    """``listed``: callbacks as a YAML lists them (a TeacherFreeze there is replaced by the module's own)."""
    recorder = recorder or _GammaRecorder()
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=epochs, limit_train_batches=1, limit_val_batches=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[*listed, *([decay] if decay else []), recorder],
    )  # fmt: skip
    loader = DataLoader([tiny_batch()], batch_size=None)
    trainer.fit(module, train_dataloaders=loader)
    return recorder, trainer


def _optimizer_params(trainer: L.Trainer) -> set[int]:
    return {id(p) for opt in trainer.optimizers for g in opt.param_groups for p in g["params"]}


def test_layer_decay_fades_then_removes_and_rebuilds_the_optimizer(tmp_path):
    module = stage2_module(tmp_path, depth=4, pairs=([1, 3], [1, 3]))
    decay = LayerDecay(blocks=[0, 2], decay_epochs=3, remove_after_epoch=3)
    recorder, trainer = _fit(module, decay, epochs=5)
    for epoch in (1, 2, 3):
        assert recorder.gammas[epoch] == {0: layer_decay_gamma(epoch, 3), 2: layer_decay_gamma(epoch, 3)}
        assert recorder.depths[epoch] == 4
    assert recorder.gammas[2] == {0: 0.0, 2: 0.0}  # official: zero one epoch before m
    assert recorder.gammas[4] == {} and recorder.depths[4] == 2 and recorder.depths[5] == 2
    assert module.pruned_blocks == (0, 2)
    assert module.feature_pairs.student == [0, 1]
    trainable = {id(p) for p in module.network.parameters() if p.requires_grad}
    assert _optimizer_params(trainer) == trainable and len(trainable) == len(list(module.network.parameters())) - 2
    assert all(not p.requires_grad for p in module.teacher.parameters()) and not module.teacher.training


def test_rebuilt_optimizer_after_removal_uses_the_injected_optimizer_and_groups(tmp_path):
    module = stage2_module(
        tmp_path, depth=4, pairs=([1, 3], [1, 3]),
        optimizer=lambda params: torch.optim.SGD(params, lr=0.5, momentum=0.9),
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=100),
        param_groups=ParamGroups(backbone_lr_multiplier=0.2),
    )  # fmt: skip
    _, trainer = _fit(module, LayerDecay(blocks=[0, 2], decay_epochs=2, remove_after_epoch=2), epochs=3)
    assert module.network.backbone.depth == 2
    optimizer = trainer.optimizers[0]
    assert isinstance(optimizer, torch.optim.SGD)
    assert isinstance(trainer.lr_scheduler_configs[0].scheduler, torch.optim.lr_scheduler.CosineAnnealingLR)
    head, backbone = optimizer.param_groups
    assert head["initial_lr"] == pytest.approx(0.5) and backbone["initial_lr"] == pytest.approx(0.1)
    assert {id(p) for p in backbone["params"]} == {
        id(p) for p in module.network.backbone.parameters() if p.requires_grad
    }  # the rebuilt groups hold only the surviving blocks


def test_layer_decay_continue_mode_drops_removed_parameters_from_optimizer_state(tmp_path):
    module = stage2_module(tmp_path, depth=4, pairs=([1, 3], [1, 3]))
    removed = [p for i in (0, 2) for p in module.network.backbone.blocks[i].parameters()]
    decay = LayerDecay(
        blocks=[0, 2], decay_epochs=2, remove_after_epoch=2, schedule="paper", freeze_fading=False,
        optimizer_after_removal="continue",
    )  # fmt: skip
    _, trainer = _fit(module, decay, epochs=3)
    optimizer = trainer.optimizers[0]
    assert module.network.backbone.depth == 2
    assert not {id(p) for p in removed} & _optimizer_params(trainer)
    assert not {id(p) for p in removed} & {id(p) for p in optimizer.state}
    assert {id(p) for p in optimizer.state} == _optimizer_params(trainer)  # kept moments of the survivors


# --------------------------------------------------------------------------------- TeacherFreeze


class _TeacherModeRecorder(L.Callback):
    """At the first training batch: the teacher's mode, its DropPath modes, and two teacher outputs on one input."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        teacher = pl_module.teacher
        self.training = teacher.training
        self.drop_path_training = [b.drop_path.training for b in teacher.backbone.blocks[1:]]
        with torch.no_grad():
            self.boxes = [mixformer_forward(teacher, batch, softmax=True).boxes for _ in range(2)]


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_teacher_mode_in_a_run(tmp_path, mode):
    """The module freezes its teacher by itself (configure_callbacks); train mode keeps DropPath on."""
    module = stage2_module(tmp_path, depth=3, pairs=([2], [2]), teacher_mode=mode)
    module.teacher.backbone.set_drop_path_rate(0.3)
    recorder, trainer = _fit(module, None, epochs=1, recorder=_TeacherModeRecorder(), listed=())
    freezes = [cb for cb in trainer.callbacks if isinstance(cb, TeacherFreeze)]
    assert len(freezes) == 1 and freezes[0].mode == mode
    assert recorder.training == (mode == "train")
    assert all(recorder.drop_path_training) == (mode == "train") and any(recorder.drop_path_training) == (mode == "train")
    assert torch.equal(*recorder.boxes) == (mode == "eval")  # DropPath makes two train-mode calls differ
    assert all(p.grad is None and not p.requires_grad for p in module.teacher.parameters())
    assert not {id(p) for p in module.teacher.parameters()} & _optimizer_params(trainer)
    assert any(p.grad is not None for p in module.network.parameters())


def test_teacher_stays_in_eval_without_gradients_after_train(tmp_path):
    module = stage2_module(tmp_path)
    TeacherFreeze().setup(None, module, "fit")
    module.train()
    assert module.network.training
    assert all(not m.training for m in module.teacher.modules())
    assert all(not p.requires_grad for p in module.teacher.parameters())
    module.teacher.train(True)
    assert not module.teacher.training


def test_teacher_is_not_in_the_optimizer(tmp_path):
    module = stage2_module(tmp_path)
    optimizer = module.configure_optimizers()["optimizer"]
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert not in_optimizer & {id(p) for p in module.teacher.parameters()}
    assert in_optimizer == {id(p) for p in module.network.parameters() if p.requires_grad}


@pytest.mark.parametrize("save_teacher", [False, True])
def test_teacher_left_out_of_checkpoints_unless_asked(tmp_path, save_teacher):
    module = stage2_module(tmp_path)
    checkpoint = {"state_dict": module.state_dict()}
    TeacherFreeze(save_teacher=save_teacher).on_save_checkpoint(None, module, checkpoint)
    has_teacher = any(k.startswith("teacher.") for k in checkpoint["state_dict"])
    assert has_teacher == save_teacher
    assert any(k.startswith("network.") for k in checkpoint["state_dict"])
    fresh = stage2_module(tmp_path)
    fresh.on_load_checkpoint(checkpoint)  # without the teacher's weights: the module's own teacher fills in
    fresh.load_state_dict(checkpoint["state_dict"], strict=True)
    assert fresh.has_teacher_weights == save_teacher


def test_a_listed_teacher_freeze_that_asks_for_other_settings_is_refused(tmp_path):
    from trackers.errors import SetupError

    module = stage2_module(tmp_path, teacher_mode="train")
    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, callbacks=[TeacherFreeze(save_teacher=True)])  # fmt: skip
    with pytest.raises(SetupError, match="model.init_args.save_teacher / teacher_mode"):
        trainer.fit(module, train_dataloaders=DataLoader([tiny_batch()], batch_size=None))
