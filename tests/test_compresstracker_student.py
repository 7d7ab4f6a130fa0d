"""CompressTracker deployable student: stage layout, official key conversion, skip initialisation."""

from __future__ import annotations

import pytest
import torch

from trackers.models.compresstracker import (
    build_student,
    convert_official_state_dict,
    init_student_from_teacher,
    stage_output_layers,
    stage_teacher_blocks,
    student_drop_path_rates,
    to_official_state_dict,
)
from trackers.errors import SetupError
from trackers.models.mixvit import MixViT
from trackers.models.ostrack import OSTrack

TINY = dict(embed_dim=32, num_heads=2, template_size=32, search_size=64, head_channels=16)


def test_stage_layout_matches_official_tables():
    assert stage_output_layers(12, 2) == [5, 11]
    assert stage_output_layers(12, 3) == [3, 7, 11]
    assert stage_output_layers(12, 4) == [2, 5, 8, 11]
    assert stage_output_layers(12, 6) == [1, 3, 5, 7, 9, 11]
    assert [list(s) for s in stage_teacher_blocks(12, 4)] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]
    assert student_drop_path_rates(12, 4, 0.1) == pytest.approx([0, 0.0272727, 0.0545454, 0.0818181], abs=1e-6)
    with pytest.raises(ValueError, match="must divide"):
        stage_teacher_blocks(12, 5)


def test_official_training_checkpoint_converts_to_student_and_back():
    student = build_student(2, **TINY)
    suite = student.state_dict()
    official = to_official_state_dict(suite)
    assert any(k.startswith("backbone.distill_blocks.1.") for k in official)
    training = dict(official)
    training.update({f"backbone.blocks.{i}.norm1.weight": torch.ones(32) for i in range(12)})
    training.update({"ori_backbone.norm.weight": torch.ones(32), "ori_box_head.conv5_ctr.bias": torch.ones(1)})
    assert convert_official_state_dict(training).keys() == suite.keys()
    assert convert_official_state_dict(suite) is suite


def test_skip_init_copies_last_block_of_each_stage():
    torch.manual_seed(0)
    teacher = OSTrack(depth=12, **TINY)
    student = build_student(3, **TINY)
    init_student_from_teacher(student, teacher.state_dict())
    for i, src in enumerate([3, 7, 11]):
        torch.testing.assert_close(student.backbone.blocks[i].mlp.fc2.weight, teacher.backbone.blocks[src].mlp.fc2.weight)
    torch.testing.assert_close(student.box_head.conv5_ctr.weight, teacher.box_head.conv5_ctr.weight)
    torch.testing.assert_close(student.backbone.pos_embed_x, teacher.backbone.pos_embed_x)


def test_teacher_init_goes_through_load_weights_and_reads_the_teacher_depth():
    """A 6-block teacher into a 3-block student: stage ends 1, 3, 5 (the depth comes from the teacher's keys)."""
    from trackers.models.checkpoints import load_weights

    torch.manual_seed(0)
    teacher = OSTrack(depth=6, ce_loc=(3,), ce_keep_ratio=(0.7,), **TINY)
    student = build_student(3, teacher_depth=6, **TINY)
    load_weights(student, {f"network.{k}": v for k, v in teacher.state_dict().items()}, source="teacher", prefix="network.")
    for i, src in enumerate([1, 3, 5]):
        torch.testing.assert_close(student.backbone.blocks[i].attn.qkv.weight, teacher.backbone.blocks[src].attn.qkv.weight)
    with pytest.raises(SetupError, match="teacher"):
        load_weights(MixViT(embed_dim=32, depth=1, num_heads=2, template_size=32, search_size=64,
                            head_type="CORNER", head_channels=16), {}, source="teacher")


def test_official_student_names_load_into_an_ostrack_network(tmp_path):
    """The converters follow the class: an OSTrack network takes CompressTracker names, no family named."""
    from trackers.models.checkpoints import load_weights

    torch.manual_seed(0)
    source, target = build_student(2, **TINY), build_student(2, **TINY)
    torch.save({"net": to_official_state_dict(source.state_dict())}, tmp_path / "ct.pth.tar")
    load_weights(target, tmp_path / "ct.pth.tar")
    torch.testing.assert_close(target.backbone.blocks[1].mlp.fc1.weight, source.backbone.blocks[1].mlp.fc1.weight)
