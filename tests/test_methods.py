"""The method skeleton: injected optimizer and schedule on the parameter groups, the centre-head family parts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from jsonargparse import ArgumentParser

from trackers.methods.base import TrackingModule
from trackers.methods.center_family import CenterLossWeights, CenterTrackerConfig, center_forward, center_head_losses
from trackers.methods.distillation import DistillationModule, FeaturePairs
from trackers.methods.supervised import CenterHeadTraining
from trackers.models.ostrack import OSTrack
from trackers.types import TrackerOutput

ROOT = Path(__file__).resolve().parents[1]
TINY_OSTRACK = {"embed_dim": 32, "depth": 2, "num_heads": 2, "template_size": 32, "search_size": 64,
                "head_channels": 16, "drop_path_rate": 0.0}  # fmt: skip


def tiny_batch(b: int = 2) -> dict:
    g = torch.Generator().manual_seed(0)
    return {
        "template": torch.randn(b, 1, 3, 32, 32, generator=g),
        "search": torch.randn(b, 3, 64, 64, generator=g),
        "search_box": torch.cat([0.4 + 0.2 * torch.rand(b, 2, generator=g), 0.2 + 0.2 * torch.rand(b, 2, generator=g)], 1),
    }


def _module_from_config(init_args: dict) -> TrackingModule:
    """The model as LightningCLI builds it from a YAML ``model`` section (subclass mode)."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(TrackingModule, "model")
    section = {"class_path": "trackers.methods.supervised.CenterHeadTraining", "init_args": {
        "network": {"class_path": "trackers.models.ostrack.OSTrack", "init_args": TINY_OSTRACK}, **init_args}}
    cfg = parser.parse_object({"model": section})
    return parser.instantiate(cfg).model


def _groups(module: TrackingModule) -> tuple[torch.optim.Optimizer, object]:
    config = module.configure_optimizers()
    return config["optimizer"], config["lr_scheduler"]["scheduler"]


def test_default_recipe_is_adamw_step_with_a_slower_backbone():
    module = CenterHeadTraining(network=OSTrack(**TINY_OSTRACK))
    optimizer, scheduler = _groups(module)
    assert isinstance(optimizer, torch.optim.AdamW) and isinstance(scheduler, torch.optim.lr_scheduler.StepLR)
    head, backbone = optimizer.param_groups
    assert head["lr"] == pytest.approx(4e-4) and backbone["lr"] == pytest.approx(4e-5)
    assert backbone["initial_lr"] == pytest.approx(4e-5) and head["weight_decay"] == pytest.approx(1e-4)
    assert scheduler.step_size == 240 and scheduler.gamma == pytest.approx(0.1)
    trainable_backbone = {id(p) for p in module.network.backbone.parameters() if p.requires_grad}
    assert {id(p) for p in backbone["params"]} == trainable_backbone
    assert {id(p) for p in head["params"]} == {id(p) for p in module.network.box_head.parameters()}


def test_an_ablation_swaps_optimizer_and_schedule_in_yaml():
    module = _module_from_config({
        "optimizer": {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.02, "momentum": 0.9}},
        "lr_scheduler": {"class_path": "torch.optim.lr_scheduler.CosineAnnealingLR", "init_args": {"T_max": 50}},
        "param_groups": {"backbone_lr_multiplier": 0.25},
    })  # fmt: skip
    optimizer, scheduler = _groups(module)
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["momentum"] == 0.9
    assert isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR) and scheduler.T_max == 50
    head, backbone = optimizer.param_groups
    assert head["initial_lr"] == pytest.approx(0.02) and backbone["initial_lr"] == pytest.approx(0.005)
    for _ in range(25):
        optimizer.step()
        scheduler.step()
    assert head["lr"] == pytest.approx(0.01) and backbone["lr"] == pytest.approx(0.0025)  # cosine half-way


def test_a_fragment_overrides_one_init_arg_of_the_experiment_optimizer(tmp_path):
    """`--print_config` of ostrack_256 + cpu_smoke: the fragment's lr and step size on the recipe's classes."""
    result = subprocess.run(
        [sys.executable, "-m", "lightning_app.cli", "fit", "--config", str(ROOT / "configs/ostrack_256.yaml"),
         "--config", str(ROOT / "configs/presets/cpu_smoke.yaml"), "--print_config"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    model = yaml.safe_load(result.stdout)["model"]["init_args"]
    assert model["optimizer"]["class_path"] == "torch.optim.AdamW"
    assert model["optimizer"]["init_args"]["lr"] == pytest.approx(1e-3)
    assert model["optimizer"]["init_args"]["weight_decay"] == pytest.approx(1e-4)  # kept from the experiment
    assert model["lr_scheduler"]["class_path"] == "torch.optim.lr_scheduler.StepLR"
    assert model["lr_scheduler"]["init_args"]["step_size"] == 4 and model["lr_scheduler"]["init_args"]["gamma"] == 0.1
    assert model["param_groups"]["backbone_lr_multiplier"] == 1.0


def test_python_built_module_keeps_its_callables_out_of_the_hyperparameters():
    module = CenterHeadTraining(network=OSTrack(**TINY_OSTRACK), tracker_name="x", pretrained=None)
    assert "optimizer" not in module.hparams and "lr_scheduler" not in module.hparams
    assert "tracker_name" not in module.hparams and "network" not in module.hparams  # test-time / weights
    assert "loss_weights" in module.hparams and "param_groups" in module.hparams


def test_constructors_are_keyword_only():
    with pytest.raises(TypeError):
        CenterHeadTraining(OSTrack(**TINY_OSTRACK))  # noqa: the network must be named


def test_every_tracking_module_states_its_tracker():
    class NoTracker(TrackingModule):
        def compute_losses(self, batch):
            return {}

    with pytest.raises(TypeError, match="build_tracker"):
        NoTracker()


# --------------------------------------------------------------------------------- centre-head family


def test_center_head_losses_weigh_each_term():
    torch.manual_seed(0)
    module = CenterHeadTraining(network=OSTrack(**TINY_OSTRACK))
    batch = tiny_batch()
    out = module(batch)
    parts = center_head_losses(out, batch, CenterLossWeights())
    assert {"giou", "l1", "focal", "iou", "total"} <= set(parts) and not parts["iou"].requires_grad
    torch.testing.assert_close(parts["total"], 2 * parts["giou"] + 5 * parts["l1"] + parts["focal"])
    focal_only = center_head_losses(out, batch, CenterLossWeights(giou=0.0, l1=0.0, focal=1.0))
    torch.testing.assert_close(focal_only["total"], parts["focal"])
    assert module.compute_losses(batch)["total"].requires_grad


def test_center_tracker_sizes_default_to_the_network():
    network = OSTrack(**TINY_OSTRACK)
    tracker = CenterTrackerConfig(search_factor=3.0, clip_margin=2.0).build(network, ce_keep_rate=1.0)
    assert (tracker.template_size, tracker.search_size) == (32, 64)
    assert tracker.clip_margin == 2.0 and tracker.ce_keep_rate == 1.0 and not network.training
    frame = np.zeros((80, 96, 3), dtype=np.uint8)
    tracker.initialize(frame, np.array([30.0, 30.0, 16.0, 12.0]))
    assert tracker.track(frame).box.shape == (4,)


def test_center_output_contract_of_the_losses():
    out = TrackerOutput(boxes=torch.tensor([[0.5, 0.5, 0.2, 0.2]]), score=None,
                        aux={"score_map": torch.full((1, 1, 4, 4), 0.5)})  # fmt: skip
    batch = {"search_box": torch.tensor([[0.5, 0.5, 0.2, 0.2]])}
    losses = center_head_losses(out, batch, CenterLossWeights())
    assert float(losses["giou"]) == pytest.approx(0.0, abs=1e-6) and float(losses["l1"]) == pytest.approx(0.0, abs=1e-6)
    assert float(losses["focal"]) > 0


# --------------------------------------------------------------------------------- composing a new method


class _CenterHeadDistillation(DistillationModule):
    """A CompressTracker-like method built from parts only: distillation base + centre-head family."""

    def __init__(self, *, loss_weights: CenterLossWeights = CenterLossWeights(), **kwargs) -> None:
        super().__init__(teacher_stage="of the test", feature_pairs=FeaturePairs([1], [1]), **kwargs)
        self.loss_weights = loss_weights
        self.tracker_config = CenterTrackerConfig()

    def compute_losses(self, batch):
        student = center_forward(self.network, batch, return_features=self.feature_pairs.student)
        teacher = self.teacher_forward(center_forward, batch, ce_keep_rate=1.0, return_features=self.feature_pairs.teacher)
        losses = center_head_losses(student, batch, self.loss_weights)
        losses["feature"] = self.feature_loss(student, teacher)
        losses["total"] = losses["total"] + losses["feature"]
        return losses

    def build_tracker(self):
        return self.tracker_config.build(self.network)


def test_a_centre_head_distillation_composes_from_the_parts(tmp_path):
    import lightning as L
    from torch.utils.data import DataLoader

    teacher_file = tmp_path / "teacher.pt"
    torch.save(OSTrack(**TINY_OSTRACK).state_dict(), teacher_file)
    module = _CenterHeadDistillation(
        network=OSTrack(**TINY_OSTRACK), teacher=OSTrack(**TINY_OSTRACK), teacher_checkpoint=str(teacher_file)
    )
    trainer = L.Trainer(accelerator="cpu", max_steps=2, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(module, train_dataloaders=DataLoader([tiny_batch(), tiny_batch()], batch_size=None))
    assert module.has_teacher_weights and not module.teacher.training  # read at fit start, frozen by configure_callbacks
    assert all(p.grad is None for p in module.teacher.parameters())
    assert {"train/feature", "train/giou", "train/total"} <= set(trainer.logged_metrics)
    tracker = module.build_tracker()
    tracker.initialize(np.zeros((80, 96, 3), dtype=np.uint8), np.array([30.0, 30.0, 16.0, 12.0]))
