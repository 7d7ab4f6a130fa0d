"""CompressTracker deployable student: an OSTrack-style model with N blocks (spec compresstracker.md §2.1-2.3, §6.2).

The student *is* an ``OSTrack`` (no CE). Only its official key names differ: the student layers
are ``backbone.distill_blocks.i`` there and ``backbone.blocks.i`` here. The stage helpers below
are what replacement training and feature mimicking index with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from trackers.errors import SetupError
from trackers.models.checkpoints import load_weights
from trackers.models.ostrack import OSTrack
from trackers.models.registry import StateDict, register_family
from trackers.models.surgery import block_indices
from trackers.nn.vit import linspace_rates

OFFICIAL_STUDENT_PREFIX = "backbone.distill_blocks."
SUITE_STUDENT_PREFIX = "backbone.blocks."
TRAINING_ONLY_PREFIXES = ("ori_backbone.", "ori_box_head.")
TEACHER_DEPTH = 12
"""The official teacher (OSTrack ViT-B); only the default of ``build_student``."""
TEACHER_DROP_PATH = 0.1
OFFICIAL_TEACHER_PREFIXES = {"ori_backbone.": "backbone.", "ori_box_head.": "box_head."}
"""Where the official training network keeps its separate frozen teacher (-> an OSTrack's names)."""
OFFICIAL_NET_TYPE = "CompressTracker"
StudentInit = Literal["last", "first", "random"]
STUDENT_INITS: tuple[StudentInit, ...] = ("last", "first", "random")


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


def stage_ranges(teacher_depth: int, student_depth: int, stage_ends: Sequence[int] | None = None) -> list[range]:
    """Teacher blocks of each stage: the official even split, or explicit ends (exclusive, ascending,
    the last = the teacher depth), e.g. [2, 3, 5, 6, 8, 9, 11, 12] for 8 stages over 12 blocks."""
    if stage_ends is None:
        return stage_teacher_blocks(teacher_depth, student_depth)
    ends = [int(e) for e in stage_ends]
    starts = [0, *ends[:-1]]
    if len(ends) != student_depth or ends[-1:] != [teacher_depth] or any(b <= a for a, b in zip(starts, ends)):
        raise SetupError(
            f"model.init_args.stage_ends {ends}: give {student_depth} ascending stage ends (one per student block) "
            f"ending at the teacher depth {teacher_depth}, or null for the even split"
        )
    return [range(a, b) for a, b in zip(starts, ends)]


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


def convert_official_state_dict(state: StateDict, model: nn.Module | None = None) -> StateDict:
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


def skip_init_state(teacher_state: StateDict, student: nn.Module) -> StateDict:
    """Official "skip" init as a state dict for ``student``: student block i <- teacher block r(i+1)-1;
    embeddings, norm and head copied.

    ``teacher_state`` is an OSTrack state dict in suite names (e.g. ``OSTrack().state_dict()`` or a
    converted official checkpoint); CE and plain teachers share keys. The teacher depth is read
    from its block keys.
    """
    teacher_depth = len(block_indices(teacher_state))
    if not teacher_depth:
        raise SetupError("the teacher state has no backbone.blocks.* keys; pass an OSTrack teacher's weights")
    sources = stage_output_layers(teacher_depth, student.backbone.depth)
    state = {k: v for k, v in teacher_state.items() if not k.startswith(SUITE_STUDENT_PREFIX)}
    for i, src in enumerate(sources):
        prefix = f"{SUITE_STUDENT_PREFIX}{src}."
        stage = {k[len(prefix) :]: v for k, v in teacher_state.items() if k.startswith(prefix)}
        state.update({f"{SUITE_STUDENT_PREFIX}{i}.{k}": v for k, v in stage.items()})
    return state


def stage_init_state(
    teacher_state: Mapping[str, Any], student_state: Mapping[str, Any], stages: Sequence[range], init: StudentInit = "last"
) -> StateDict:
    """The student's initial weights from a teacher of any block-driven family (suite names, same width).

    Every non-block key comes from the teacher (embeddings, final norm, heads, extra tokens); student
    block i comes from the last (official "skip" init) or first teacher block of stage i, or keeps
    its own random init. Raises naming the first student key the teacher lacks.
    """
    if init not in STUDENT_INITS:
        raise SetupError(f"model.init_args.student_init must be one of {STUDENT_INITS}, got {init!r}")
    state: StateDict = {}
    for key, value in student_state.items():
        if not key.startswith(SUITE_STUDENT_PREFIX):
            if key not in teacher_state:
                raise SetupError(f"the teacher has no {key!r} for the student; give student and teacher the same family and heads")
            state[key] = teacher_state[key]
            continue
        index, rest = key[len(SUITE_STUDENT_PREFIX) :].split(".", 1)
        if init == "random":
            state[key] = value
            continue
        stage = stages[int(index)]
        source = f"{SUITE_STUDENT_PREFIX}{stage[-1] if init == 'last' else stage[0]}.{rest}"
        state[key] = teacher_state[source]
    return state


def official_training_states(state: Mapping[str, Any]) -> tuple[StateDict, StateDict]:
    """An official training checkpoint (``CompressTracker``: student + frozen copies) -> (student, teacher) in
    suite names. The teacher is ``ori_backbone`` + ``ori_box_head``; the copy ``backbone.blocks.*`` equals
    its blocks in official training (both come from one OSTrack checkpoint and never train), so the
    suite runs the teacher's own blocks for teacher stages."""
    teacher: StateDict = {}
    for key, value in state.items():
        for official, suite in OFFICIAL_TEACHER_PREFIXES.items():
            if key.startswith(official):
                teacher[suite + key[len(official) :]] = value
    return convert_official_state_dict(dict(state)), teacher


def export_official_checkpoint(source: str | Path | Mapping[str, Any], path: str | Path) -> Path:
    """Write a trained student (a Lightning ``.ckpt`` of the method, or a student state dict) in the official
    deployable layout: ``{'net': backbone.distill_blocks.* ..., 'net_type': 'CompressTracker'}``, the file
    the official tracker loads strictly into ``CompressTrackerTest``."""
    from trackers.models.checkpoints import read_checkpoint

    state = read_checkpoint(source) if not isinstance(source, Mapping) else dict(source)
    if any(k.startswith(TRAINING_ONLY_PREFIXES) for k in state) or not any(k.startswith(SUITE_STUDENT_PREFIX) for k in state):
        raise SetupError(f"{source}: not a deployable student (expected backbone.blocks.*, no ori_*); export the method's .ckpt")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"net": to_official_state_dict(state), "net_type": OFFICIAL_NET_TYPE, "epoch": 0}, out)
    return out


def init_student_from_teacher(student: OSTrack, teacher_state: StateDict) -> None:
    """Skip-init ``student`` from a teacher's weights, strictly (``load_weights(source='teacher')``)."""
    load_weights(student, teacher_state, source="teacher")


register_family(
    "compresstracker", networks=(OSTrack,), convert=convert_official_state_dict, from_teacher=skip_init_state
)
