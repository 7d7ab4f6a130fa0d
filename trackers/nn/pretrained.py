"""MAE ImageNet initialisation of the one-stream ViT (specs compresstracker.md §1.8, mixformerv2.md §8.5).

MAE encoder keys already match the backbone's timm names, so loading is by name; only the
position table needs adapting:
- learned tables (OSTrack): MAE's 14x14 table minus cls, bicubic-resized to each grid;
- sin-cos tables (MixFormer): MAE's table is dropped; the fixed tables stay as built.
Decoder and mask-token keys and blocks beyond the backbone's depth are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from trackers.errors import BadFileError, MissingFileError, SetupError
from trackers.safe_unpickling import load_checkpoint_data

from trackers.nn.pos_embed import mae_grid, resize_pos_table
from trackers.nn.vit import OneStreamViT

MAE_HUB_NAME = "vit_base_patch16_224.mae"
MAE_NUM_PREFIX_TOKENS = 1
FIXED_TABLES = ("pos_embed_t", "pos_embed_s")


@dataclass(frozen=True)
class PretrainedReport:
    """What the load did: backbone keys left at init, and source keys not used."""

    source: str
    missing: tuple[str, ...]
    unused: tuple[str, ...]


def read_mae_state_dict(source: str | Path) -> dict[str, Tensor]:
    """'mae' -> timm hub weights; otherwise a local MAE file (``ckpt['model']``) or a plain state dict."""
    if str(source) == "mae":
        return _from_hub()
    path = Path(source)
    if not path.is_file():
        raise MissingFileError(
            f"MAE weights {path} not found; set `pretrained:` to an existing "
            f"mae_pretrain_vit_base.pth or to 'mae' (timm hub)"
        )
    obj = load_checkpoint_data(path)  # as data, never code; a corrupt file is one line
    state = obj.get("model", obj) if isinstance(obj, dict) else obj
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise BadFileError(f"{path} holds no MAE state dict (expected ckpt['model'] or a plain dict)")
    return state


def _from_hub() -> dict[str, Tensor]:
    import timm

    try:
        model = timm.create_model(MAE_HUB_NAME, pretrained=True, num_classes=0)
    except Exception as err:  # network, hub or cache failure: one actionable line
        raise SetupError(
            f"cannot fetch {MAE_HUB_NAME} from the hub ({type(err).__name__}); "
            f"download MAE weights and set `pretrained: /path/mae_pretrain_vit_base.pth`"
        ) from None
    return model.state_dict()


def adapt_mae_state_dict(state: dict[str, Tensor], backbone: OneStreamViT) -> dict[str, Tensor]:
    """Rename/resize MAE tensors into the backbone's names; drop what the backbone has no place for."""
    own = backbone.state_dict()
    # MixFormer drops every MAE position table (its own are fixed sin-cos), even into a dead pos_embed.
    skip = {"pos_embed_z", "pos_embed_x"} | ({"pos_embed"} if backbone.pos_embed_kind == "sincos" else set())
    out = {k: v for k, v in state.items() if k in own and k not in skip}
    if "pos_embed" in state and backbone.pos_embed_kind == "learned":
        table = state["pos_embed"][:, MAE_NUM_PREFIX_TOKENS:]
        src = (mae_grid(backbone.patch_size),) * 2
        if table.shape[1] != src[0] * src[1]:
            raise BadFileError(
                f"MAE pos_embed has {table.shape[1]} patch positions, expected "
                f"{src[0] * src[1]} for patch size {backbone.patch_size}"
            )
        out["pos_embed_z"] = resize_pos_table(table, src, backbone.template_grid)
        out["pos_embed_x"] = resize_pos_table(table, src, backbone.search_grid)
    for k, v in out.items():
        if v.shape != own[k].shape:
            raise BadFileError(
                f"MAE tensor {k} has shape {tuple(v.shape)} but the backbone "
                f"expects {tuple(own[k].shape)}; build the backbone with the MAE width/patch size"
            )
    return out


def load_mae_into(backbone: OneStreamViT, source: str | Path) -> PretrainedReport:
    """Initialise ``backbone`` from MAE weights ('mae' or a local file); returns what was missing/unused."""
    return load_vit_state_into(backbone, read_mae_state_dict(source), str(source))


def load_vit_state_into(backbone: OneStreamViT, state: dict[str, Tensor], source: str) -> PretrainedReport:
    """Initialise ``backbone`` from any timm-named ViT state (MAE, or another one-stream backbone's)."""
    adapted = adapt_mae_state_dict(state, backbone)
    with torch.no_grad():
        result = backbone.load_state_dict(adapted, strict=False)
    unused = tuple(k for k in state if k not in adapted and not (k == "pos_embed" and "pos_embed_z" in adapted))
    fixed = FIXED_TABLES if backbone.pos_embed_kind == "sincos" else ()
    return PretrainedReport(source, tuple(k for k in result.missing_keys if k not in fixed), unused)
