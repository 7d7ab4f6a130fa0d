"""CompressTracker deployable student: an OSTrack-style model with N blocks (spec compresstracker.md §2.1-2.3, §6.2).

The student *is* an ``OSTrack`` (no CE). Only its official key names differ: the student layers
are ``backbone.distill_blocks.i`` there and ``backbone.blocks.i`` here. The stage helpers below
are what replacement training and feature mimicking index with.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trackers.models.checkpoints import load_strict
from trackers.models.ostrack import (
    VIT_B,
    OSTrack,
    center_tracker_parity,
    official_center_tracker_args,
)
from trackers.models.registry import StateDict, register_family, register_official_config
from trackers.nn.vit import linspace_rates

OFFICIAL_STUDENT_PREFIX = "backbone.distill_blocks."
SUITE_STUDENT_PREFIX = "backbone.blocks."
TRAINING_ONLY_PREFIXES = ("ori_backbone.", "ori_box_head.")
TEACHER_DEPTH = 12
TEACHER_DROP_PATH = 0.1


def stage_ratio(teacher_depth: int, student_depth: int) -> int:
    """Teacher layers per stage, r = teacher_depth // student_depth (the official code requires an even split)."""
    if student_depth <= 0 or teacher_depth % student_depth:
        raise ValueError(
            f"student depth {student_depth} must divide teacher depth "
            f"{teacher_depth} (official stages are even)"
        )
    return teacher_depth // student_depth


def stage_teacher_blocks(teacher_depth: int, student_depth: int) -> list[range]:
    """Teacher blocks replaced by each student block: stage i covers [i*r, (i+1)*r)."""
    r = stage_ratio(teacher_depth, student_depth)
    return [range(i * r, (i + 1) * r) for i in range(student_depth)]


def stage_output_layers(teacher_depth: int, student_depth: int) -> list[int]:
    """Last teacher block of each stage (``distill_return_layer``; also the skip-init source layers)."""
    return [stage[-1] for stage in stage_teacher_blocks(teacher_depth, student_depth)]


def student_drop_path_rates(teacher_depth: int, student_depth: int, max_rate: float) -> list[float]:
    """Student block i takes the teacher's stochastic-depth rate at block i*r."""
    teacher = linspace_rates(max_rate, teacher_depth)
    return [teacher[stage.start] for stage in stage_teacher_blocks(teacher_depth, student_depth)]


def build_student(
    student_depth: int,
    teacher_depth: int = TEACHER_DEPTH,
    drop_path_rate: float = TEACHER_DROP_PATH,
    **ostrack_args: Any,
) -> OSTrack:
    """Deployable N-block student; other arguments as ``OSTrack`` (ViT-B width, no CE)."""
    rates = student_drop_path_rates(teacher_depth, student_depth, drop_path_rate)
    return OSTrack(depth=student_depth, drop_path_rate=rates, **ostrack_args)


def from_official_config(config: Mapping[str, Any], backbone_args: Mapping[str, Any]) -> OSTrack:
    """Official names: ``DEPTH`` is the teacher depth, ``MODEL.BACKBONE.DISTILL_LAYER`` the student's."""
    args = official_center_tracker_args(config, backbone_args)
    teacher_depth, rate = args.pop("depth"), args.pop("drop_path_rate")
    for ce_key in ("ce_loc", "ce_keep_ratio", "ce_template_range"):
        args.pop(ce_key)
    return build_student(int(config["MODEL.BACKBONE.DISTILL_LAYER"]), teacher_depth, rate, **args)


def convert_official_state_dict(state: StateDict) -> StateDict:
    """Official (deployable or training) keys -> suite keys of the student; idempotent on suite keys.

    A training checkpoint also holds the frozen teacher copy ``backbone.blocks.*`` and ``ori_*``:
    those are dropped before ``distill_blocks`` become ``blocks``.
    """
    if not any(k.startswith(OFFICIAL_STUDENT_PREFIX) for k in state):
        return state
    out: StateDict = {}
    for k, v in state.items():
        if k.startswith(TRAINING_ONLY_PREFIXES) or k.startswith(SUITE_STUDENT_PREFIX):
            continue
        out[k.replace(OFFICIAL_STUDENT_PREFIX, SUITE_STUDENT_PREFIX, 1)] = v
    return out


def to_official_state_dict(state: StateDict) -> StateDict:
    """Suite student keys -> official deployable keys (``CompressTrackerTest`` loads them strictly)."""
    return {k.replace(SUITE_STUDENT_PREFIX, OFFICIAL_STUDENT_PREFIX, 1): v for k, v in state.items()}


def init_student_from_teacher(student: OSTrack, teacher_state: StateDict, teacher_depth: int = TEACHER_DEPTH) -> None:
    """Official "skip" init: student block i <- teacher block r(i+1)-1; embeddings, norm and head copied.

    ``teacher_state`` is an OSTrack state dict in suite names (e.g. ``OSTrack().state_dict()`` or a
    converted official checkpoint); CE and plain teachers share keys.
    """
    sources = stage_output_layers(teacher_depth, student.backbone.depth)
    state = {k: v for k, v in teacher_state.items() if not k.startswith(SUITE_STUDENT_PREFIX)}
    for i, src in enumerate(sources):
        prefix = f"{SUITE_STUDENT_PREFIX}{src}."
        state.update(
            {f"{SUITE_STUDENT_PREFIX}{i}.{k[len(prefix):]}": v for k, v in teacher_state.items() if k.startswith(prefix)}
        )
    load_strict(student, state, "teacher state dict (CompressTracker skip init)")


register_family(
    "compresstracker",
    build=lambda meta: from_official_config(meta["config"], meta["backbone_args"]),
    parity_outputs=center_tracker_parity,
    convert_official=convert_official_state_dict,
)
for _n in (2, 3, 4, 6):
    register_official_config(
        f"experiments/compresstracker/compresstracker_vitb_256_{_n}.yaml",
        "compresstracker",
        lambda n=_n: build_student(n, embed_dim=VIT_B["embed_dim"], num_heads=VIT_B["num_heads"]),
    )
