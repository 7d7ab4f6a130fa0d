"""Test-side harness for the official parity fixtures and full-size layout manifests.

Only the tests build models from official config names, so this lives beside them (the model files
keep the networks and their converters). Per family: how to build the model of a fixture's
``meta.json`` (official config names), and how to call it to get the fixture's named outputs
(fixtures README A.2/A.3); and the full-size official configurations the manifests describe.

Fixtures or manifests of families listed in ``UNREGISTERED_FAMILIES`` / ``UNREGISTERED_CONFIGS``
are skipped on purpose; any other unknown name fails (so a typo cannot turn a failure into a skip).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from trackers.models.compresstracker import build_student
from trackers.models.mixformerv2 import RELEASED_NUM_BINS, REPO_NUM_BINS, MixFormerV2
from trackers.models.mixvit import DEFAULT_DROP_PATH_RATE, DEFAULT_HEAD_DIM, MixViT
from trackers.models.ostrack import OSTrack
from trackers.nn.heads.center import CenterHead
from trackers.nn.heads.distribution import SIDES
from trackers.nn.vit import VIT_SIZES
from trackers.nn.window import hann2d
from trackers.types import TrackerOutput

Meta = Mapping[str, Any]
CE_BACKBONE_SUFFIX = "_ce"
OSTRACK_CE = dict(ce_loc=(3, 6, 9), ce_keep_ratio=(0.7, 0.7, 0.7))
"""CE blocks and ratios of the official ``vitb_*_mae_ce_*`` configs."""
VIT_B = {k: VIT_SIZES["base_patch16"][k] for k in ("embed_dim", "depth", "num_heads", "mlp_ratio")}

UNREGISTERED_FAMILIES = {
    "compresstracker_train": "a training-time fixture (teacher + student stages): tests/test_compresstracker_fixtures.py",
}
UNREGISTERED_CONFIGS = {
    "experiments/mixformer_vit_online/baseline.yaml": (
        "MixFormer-repo MixViT with SPM: only its conversion to the teacher is tested (test_mixformer_models)"
    ),
}


def forward_kwargs(meta: Meta, inputs: Mapping[str, Tensor]) -> dict[str, Any]:
    """The fixture's official forward call as keyword arguments (fixtures README A.2 ``forward_call.kwargs``)."""
    return {
        arg: inputs[spec["input"]] if "input" in spec else spec["value"]
        for arg, spec in meta["forward_call"]["kwargs"].items()
    }


# ------------------------------------------------------------------ OSTrack and CompressTracker students


def official_center_tracker_args(config: Mapping[str, Any], backbone_args: Mapping[str, Any]) -> dict[str, Any]:
    """Constructor arguments shared by OSTrack-style models, read from official config names."""
    head = config.get("MODEL.HEAD.TYPE", "CENTER")
    if head != "CENTER":
        raise ValueError(f"only the CENTER head is implemented, config has MODEL.HEAD.TYPE={head!r}")
    patch = int(backbone_args.get("PATCH_SIZE", 16))
    stride = int(config.get("MODEL.BACKBONE.STRIDE", patch))
    if stride != patch:
        raise ValueError(f"MODEL.BACKBONE.STRIDE {stride} != patch size {patch} is not supported")
    has_ce = str(config.get("MODEL.BACKBONE.TYPE", "")).endswith(CE_BACKBONE_SUFFIX)
    return dict(
        embed_dim=int(backbone_args["EMBED_DIM"]),
        depth=int(backbone_args["DEPTH"]),
        num_heads=int(backbone_args["NUM_HEADS"]),
        mlp_ratio=float(backbone_args.get("MLP_RATIO", 4.0)),
        patch_size=patch,
        template_size=int(config["DATA.TEMPLATE.SIZE"]),
        search_size=int(config["DATA.SEARCH.SIZE"]),
        ce_loc=tuple(config.get("MODEL.BACKBONE.CE_LOC") or ()) if has_ce else (),
        ce_keep_ratio=tuple(config.get("MODEL.BACKBONE.CE_KEEP_RATIO") or ()) if has_ce else (),
        ce_template_range=config.get("MODEL.BACKBONE.CE_TEMPLATE_RANGE", "ALL"),
        head_channels=int(config.get("MODEL.HEAD.NUM_CHANNELS", 256)),
        drop_path_rate=float(backbone_args.get("DROP_PATH_RATE", config.get("TRAIN.DROP_PATH_RATE", 0.1))),
    )


def ostrack_from_meta(meta: Meta) -> OSTrack:
    return OSTrack(**official_center_tracker_args(meta["config"], meta["backbone_args"]))


def compresstracker_from_meta(meta: Meta) -> OSTrack:
    """Official names: ``DEPTH`` is the teacher depth, ``MODEL.BACKBONE.DISTILL_LAYER`` the student's."""
    config = meta["config"]
    args = official_center_tracker_args(config, meta["backbone_args"])
    teacher_depth, rate = args.pop("depth"), args.pop("drop_path_rate")
    for ce_key in ("ce_loc", "ce_keep_ratio", "ce_template_range"):
        args.pop(ce_key)
    return build_student(int(config["MODEL.BACKBONE.DISTILL_LAYER"]), teacher_depth, rate, **args)


def center_parity_outputs(out: TrackerOutput) -> dict[str, Tensor]:
    """Fixture outputs of a centre-head tracker (fixtures README A.3): forward outputs plus the Hann-windowed box."""
    score_map, size_map, offset_map = out.aux["score_map"], out.aux["size_map"], out.aux["offset_map"]
    window = hann2d(score_map.shape[-2], score_map.shape[-1], score_map.device)
    result = {
        "pred_boxes": out.boxes.unsqueeze(1),
        "score_map": score_map,
        "size_map": size_map,
        "offset_map": offset_map,
        "backbone_feat": out.aux["backbone_feat"],
        "pred_boxes_hann": CenterHead.decode(score_map * window, size_map, offset_map),
    }
    for i, removed in enumerate(out.aux.get("removed_indexes", [])):
        result[f"removed_indexes_s_{i}"] = removed.to(torch.int64)
    return result


def center_tracker_parity(model: nn.Module, meta: Meta, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
    kw = forward_kwargs(meta, inputs)
    out = model(kw["template"], kw["search"], kw.get("ce_template_mask"), kw.get("ce_keep_rate"))
    return center_parity_outputs(out)


# ------------------------------------------------------------------ MixViT and MixFormerV2


def official_vit_args(config: Mapping[str, Any], backbone_args: Mapping[str, Any] | None) -> dict[str, Any]:
    """ViT sizes of an official MixFormer config: VIT_TYPE defaults, overridden by explicit ``backbone_args``."""
    vit_type = config.get("MODEL.VIT_TYPE", "base_patch16")
    if vit_type not in VIT_SIZES:
        raise ValueError(f"MODEL.VIT_TYPE {vit_type!r} unknown; use one of {sorted(VIT_SIZES)}")
    args = dict(VIT_SIZES[vit_type], drop_path_rate=DEFAULT_DROP_PATH_RATE, norm_eps=1e-6)
    names = dict(
        EMBED_DIM="embed_dim", DEPTH="depth", NUM_HEADS="num_heads", MLP_RATIO="mlp_ratio",
        PATCH_SIZE="patch_size", DROP_PATH_RATE="drop_path_rate", LAYER_NORM_EPS="norm_eps",
    )  # fmt: skip
    for official, ours in names.items():
        if backbone_args and official in backbone_args:
            args[ours] = backbone_args[official]
    args["template_size"] = int(config.get("DATA.TEMPLATE.SIZE", 128))
    args["search_size"] = int(config.get("DATA.SEARCH.SIZE", 288))
    return args


def mixvit_from_meta(meta: Meta) -> MixViT:
    """Official names ``MODEL.VIT_TYPE``, ``MODEL.HEAD_TYPE``, ``MODEL.HEAD_DIM``, ``DATA.*.SIZE``;
    ``backbone_args`` (fixture meta) override the VIT_TYPE sizes."""
    config = meta["config"]
    vit = official_vit_args(config, meta.get("backbone_args"))
    hidden = int(config.get("MODEL.HIDDEN_DIM", vit["embed_dim"]))
    if hidden != vit["embed_dim"]:
        raise ValueError(
            f"MODEL.HIDDEN_DIM {hidden} must equal the ViT width {vit['embed_dim']} "
            f"(it is the corner head's input width)"
        )
    return MixViT(
        **vit,
        head_type=config.get("MODEL.HEAD_TYPE", "CORNER_UP"),
        head_channels=int(config.get("MODEL.HEAD_DIM", DEFAULT_HEAD_DIM)),
    )


def mixvit_parity(model: nn.Module, meta: Meta, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
    kw = forward_kwargs(meta, inputs)
    out = model(kw["template"], kw["online_template"], kw["search"], softmax=kw.get("softmax", True))
    return {"pred_boxes": out.boxes.unsqueeze(1), "prob_tl": out.aux["prob_tl"], "prob_br": out.aux["prob_br"]}


def mixformerv2_from_meta(meta: Meta) -> MixFormerV2:
    """Official names ``MODEL.BACKBONE.DEPTH``/``MLP_RATIO``, ``MODEL.FEAT_SZ``, ``MODEL.HIDDEN_DIM``,
    ``DATA.*.SIZE``; the online builder has a score head, the stage-1/2 builders do not."""
    config = meta["config"]
    cfg_vit = {k: config[f"MODEL.BACKBONE.{k}"] for k in ("DEPTH", "MLP_RATIO") if f"MODEL.BACKBONE.{k}" in config}
    vit = official_vit_args(config, {**cfg_vit, **(meta.get("backbone_args") or {})})
    head = config.get("MODEL.HEAD_TYPE", "MLP")
    if "MLP" not in head:
        raise ValueError(f"MODEL.HEAD_TYPE must contain 'MLP', got {head!r}")
    return MixFormerV2(
        **vit,
        num_bins=int(config.get("MODEL.FEAT_SZ", RELEASED_NUM_BINS)),
        head_hidden_dim=int(config.get("MODEL.HIDDEN_DIM", vit["embed_dim"])),
        score_head="online" in meta.get("official_builder", "online"),
    )


def mixformerv2_parity(model: nn.Module, meta: Meta, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
    kw = forward_kwargs(meta, inputs)
    last = model.backbone.depth - 1
    out = model(
        kw["template"],
        kw["online_template"],
        kw["search"],
        softmax=kw.get("softmax", True),
        run_score_head=kw.get("run_score_head", False),
        return_features=(last,),
    )
    result = {
        "pred_boxes": out.boxes.unsqueeze(1),
        "reg_tokens": out.aux["reg_tokens"],
        "distill_feat_last": out.features[last],
    }
    result.update({f"prob_{side}": out.aux[f"prob_{side}"] for side in SIDES})
    if out.score is not None:
        result["pred_scores"] = out.score
    return result


# ------------------------------------------------------------------ the tables the tests read


@dataclass(frozen=True)
class ParityFamily:
    build: Callable[[Meta], nn.Module]
    outputs: Callable[[nn.Module, Meta, Mapping[str, Tensor]], dict[str, Tensor]]


PARITY_FAMILIES = {
    "ostrack": ParityFamily(ostrack_from_meta, center_tracker_parity),
    "compresstracker": ParityFamily(compresstracker_from_meta, center_tracker_parity),
    "mixvit": ParityFamily(mixvit_from_meta, mixvit_parity),
    "mixformerv2": ParityFamily(mixformerv2_from_meta, mixformerv2_parity),
}


def _ostrack(template_size: int, search_size: int, ce: bool) -> Callable[[], nn.Module]:
    return lambda: OSTrack(**VIT_B, template_size=template_size, search_size=search_size, **(OSTRACK_CE if ce else {}))


OFFICIAL_CONFIGS: dict[str, tuple[str, Callable[[], nn.Module]]] = {
    "experiments/ostrack/vitb_256_mae_ce_32x4_ep300.yaml": ("ostrack", _ostrack(128, 256, True)),
    "experiments/ostrack/vitb_384_mae_ce_32x4_ep300.yaml": ("ostrack", _ostrack(192, 384, True)),
    "experiments/ostrack/vitb_256_mae_32x4_ep300.yaml": ("ostrack", _ostrack(128, 256, False)),
    "experiments/ostrack/vitb_256_mae_ce_32x4_got10k_ep100.yaml": ("ostrack", _ostrack(128, 256, True)),
    "experiments/ostrack/vitb_384_mae_ce_32x4_got10k_ep100.yaml": ("ostrack", _ostrack(192, 384, True)),
    **{
        f"experiments/compresstracker/compresstracker_vitb_256_{n}.yaml": (
            "compresstracker",
            lambda n=n: build_student(n, embed_dim=VIT_B["embed_dim"], num_heads=VIT_B["num_heads"]),
        )
        for n in (2, 3, 4, 6)
    },
    "experiments/mixformer_vit/teacher_mixvit_b.yaml": (
        "mixvit",
        lambda: MixViT(template_size=128, search_size=288, head_type="CORNER_UP"),
    ),
    **{
        f"experiments/{name}.yaml": ("mixformerv2", lambda a=args: MixFormerV2(**a))
        for name, args in {
            "mixformer2_vit_online/288_depth8_score": dict(depth=8, search_size=288, template_size=128),
            "mixformer2_vit_online/224_depth4_mlp1_score": dict(
                depth=4, mlp_ratio=1.0, search_size=224, template_size=112
            ),
            "mixformer2_vit/student_288_depth12": dict(depth=12, num_bins=REPO_NUM_BINS, score_head=False),
            "mixformer2_vit/teacher_288_depth12": dict(depth=12, num_bins=REPO_NUM_BINS, score_head=False),
            "mixformer2_vit_stu/student_288_depth12to8": dict(depth=12, num_bins=REPO_NUM_BINS, score_head=False),
            "mixformer2_vit_stu/student_288_depth8": dict(depth=8, num_bins=REPO_NUM_BINS, score_head=False),
        }.items()
    },
}


def parity_family(name: str) -> ParityFamily | None:
    """The harness of a fixture family; None only for the intentionally unregistered ones."""
    if name in UNREGISTERED_FAMILIES:
        return None
    if name not in PARITY_FAMILIES:
        raise KeyError(
            f"fixture family {name!r} has no parity builder and is not in UNREGISTERED_FAMILIES "
            f"(known: {sorted(PARITY_FAMILIES)}); add it to tests/parity_harness.py"
        )
    return PARITY_FAMILIES[name]


def official_config(config_yaml: str) -> tuple[str, Callable[[], nn.Module]] | None:
    """(family, builder) of a full-size official config; None only for the intentionally unregistered ones."""
    if config_yaml in UNREGISTERED_CONFIGS:
        return None
    if config_yaml not in OFFICIAL_CONFIGS:
        raise KeyError(
            f"official config {config_yaml!r} has no builder and is not in UNREGISTERED_CONFIGS; "
            f"add it to tests/parity_harness.py"
        )
    return OFFICIAL_CONFIGS[config_yaml]
