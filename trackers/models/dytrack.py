"""DyTrack: a one-stream ViT with decision branches after chosen blocks (spec dytrack.md §2-§4, §7).

Each exit k (after ``exits[k]`` blocks) has a centre head (box) and an IoU score head read from an
IoU token. A frame runs blocks up to the first exit and goes on only while the exit is not
confident, from the same token state (``iter_exits`` is a generator over ``run_segments``: leaving
the loop is the early stop, no block runs twice). Training reads every exit of every sample.

No official code exists, so every open choice of the spec's §10 is a constructor switch with the
spec's suggested default:

- ``iou_token``: ``joint`` (default; learned token(s) appended to the sequence at layer 0, full
  attention, stored as the backbone's ``reg_tokens``) or ``readout`` (a learned query per exit that
  cross-attends, at the exit, to ``iou_attends``: ``all`` | ``search`` | ``template`` tokens; the
  backbone sequence is then template + search only). ``iou_token_shared``: one token (default) or
  one per exit.
- ``recycling`` (Fig. 5's four feature-reuse schemas, on each head branch's stem feature):
  ``none`` (F_k = S_k), ``direct`` (F_k = S_k + R(S_{k-1})), ``dense`` (F_k = S_k + sum_j<k R_j(S_j)),
  ``cascade`` (default, F_k = S_k + R(F_{k-1})). ``recycling_fusion``: ``sum`` (zero-initialised
  conv1x1 per source) or ``concat`` (conv1x1 over [S_k, sources] initialised to [I | 0]); both start
  as "no reuse". ``recycling_detach`` stops the gradient into the recycled input.
- The box heads are not shared (one ``CenterHead`` per exit); every exit reads the shared final
  norm (``finalize``), so an OSTrack checkpoint's norm serves every exit.
- ``kd_projectors``: training-only LayerNorm + Linear per shallow exit (self-distillation student
  side, ``trackers.methods.dytrack``); never run at inference.

Checkpoints: the module names of an OSTrack (``backbone.*``) are kept; an OSTrack or CompressTracker
student checkpoint (official or ours) loads through ``load_weights`` with the converter registered
below (its ``box_head`` initialises every exit's head; DyTrack-only parts keep their init).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from trackers.models.compresstracker import convert_official_state_dict as convert_compresstracker_student
from trackers.models.interface import BlockDrivenNetwork, head_input_check
from trackers.models.ostrack import ostrack_backbone
from trackers.models.registry import StateDict, register_family
from trackers.nn.heads.center import BRANCHES, CenterHead
from trackers.nn.vit import Gamma, TokenState
from trackers.types import TrackerOutput

IoUTokenPlacement = Literal["joint", "readout"]
IoUAttends = Literal["all", "search", "template"]
RecyclingSchema = Literal["none", "direct", "dense", "cascade"]
RecyclingFusion = Literal["sum", "concat"]

IOU_MLP_LAYERS = 3  # spec §2.1: IoU token -> 3-layer MLP -> scalar
OSTRACK_HEAD_PREFIX = "box_head."
EXIT_HEADS_PREFIX = "box_heads."


@dataclass
class ExitMemory:
    """What later exits of the same frame reuse: each exit's raw stem features and fused features."""

    stems: list[dict[str, Tensor]] = field(default_factory=list)
    fused: list[dict[str, Tensor]] = field(default_factory=list)


class IoUHead(nn.Module):
    """IoU-token state -> 3-layer MLP (ReLU between) -> one logit; sigmoid of it is the IoU estimate."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        widths = [dim] + [hidden] * (IOU_MLP_LAYERS - 1) + [1]
        layers: list[nn.Module] = []
        for i in range(IOU_MLP_LAYERS):
            layers.append(nn.Linear(widths[i], widths[i + 1]))
            if i < IOU_MLP_LAYERS - 1:
                layers.append(nn.ReLU(inplace=True))
        self.mlp = nn.Sequential(*layers)

    def forward(self, token: Tensor) -> Tensor:
        return self.mlp(token).squeeze(-1)


class IoUReadout(nn.Module):
    """A learned query that cross-attends to an exit's tokens (``readout`` placement of the IoU token)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, query: Tensor, tokens: Tensor) -> Tensor:
        out, _ = self.attn(query, tokens, tokens, need_weights=False)
        return self.norm(query + out)[:, 0]


def recycling_sources(schema: RecyclingSchema, exit_index: int) -> list[int]:
    """Earlier exits whose features exit ``exit_index`` reuses under ``schema``."""
    if schema == "none" or exit_index == 0:
        return []
    if schema == "dense":
        return list(range(exit_index))
    return [exit_index - 1]


class FeatureRecycler(nn.Module):
    """Fuses an exit's stem features with earlier exits' (Fig. 5 schemas); zero-initialised = no reuse."""

    def __init__(
        self, schema: RecyclingSchema, fusion: RecyclingFusion, num_exits: int, channels: int, detach: bool
    ) -> None:
        super().__init__()
        if schema not in ("none", "direct", "dense", "cascade"):
            raise ValueError(f"recycling must be none | direct | dense | cascade, got {schema!r}")
        if fusion not in ("sum", "concat"):
            raise ValueError(f"recycling_fusion must be sum | concat, got {fusion!r}")
        self.schema: RecyclingSchema = schema
        self.fusion: RecyclingFusion = fusion
        self.detach = detach
        self.channels = channels
        self.fuse = nn.ModuleList()
        for k in range(num_exits):
            sources = recycling_sources(schema, k)
            per_branch = nn.ModuleDict()
            if sources:
                for name in BRANCHES:
                    if fusion == "sum":
                        per_branch[name] = nn.ModuleList(self._zero_conv(channels, channels) for _ in sources)
                    else:
                        per_branch[name] = nn.ModuleList([self._identity_concat_conv(channels, len(sources))])
            self.fuse.append(per_branch)

    @staticmethod
    def _zero_conv(cin: int, cout: int) -> nn.Conv2d:
        conv = nn.Conv2d(cin, cout, kernel_size=1)
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
        return conv

    @staticmethod
    def _identity_concat_conv(channels: int, num_sources: int) -> nn.Conv2d:
        conv = nn.Conv2d(channels * (1 + num_sources), channels, kernel_size=1)
        with torch.no_grad():
            conv.weight.zero_()
            conv.weight[:, :channels, 0, 0] = torch.eye(channels)
            conv.bias.zero_()
        return conv

    def forward(self, exit_index: int, stems: dict[str, Tensor], memory: ExitMemory) -> dict[str, Tensor]:
        """The fused features of exit ``exit_index``; records its stems and result in ``memory``."""
        sources = recycling_sources(self.schema, exit_index)
        pool = memory.fused if self.schema == "cascade" else memory.stems
        fused = dict(stems)
        if sources:
            for name in BRANCHES:
                inputs = [pool[j][name] for j in sources]
                if self.detach:
                    inputs = [x.detach() for x in inputs]
                convs = self.fuse[exit_index][name]
                if self.fusion == "sum":
                    fused[name] = stems[name] + sum(conv(x) for conv, x in zip(convs, inputs))
                else:
                    fused[name] = convs[0](torch.cat([stems[name], *inputs], dim=1))
        memory.stems.append(stems)
        memory.fused.append(fused)
        return fused


class DyTrack(BlockDrivenNetwork):
    """OSTrack-style one-stream ViT with early-exit decision branches (box + IoU score) and feature recycling.

    Backbone arguments as ``OSTrack`` (no candidate elimination: spec §10.10). ``exits``: the number
    of blocks after which each branch reads the tokens, ascending, the last one equal to ``depth``
    (the deepest exit always answers).
    """

    def __init__(
        self,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float | Sequence[float] = 4.0,
        patch_size: int = 16,
        template_size: int = 128,
        search_size: int = 256,
        head_channels: int = 256,
        drop_path_rate: float | Sequence[float] = 0.1,
        exits: Sequence[int] = (2, 6, 12),
        iou_token: IoUTokenPlacement = "joint",
        iou_token_shared: bool = True,
        iou_attends: IoUAttends = "all",
        iou_hidden: int = 256,
        recycling: RecyclingSchema = "cascade",
        recycling_fusion: RecyclingFusion = "sum",
        recycling_detach: bool = False,
    ) -> None:
        super().__init__()
        exits = [int(e) for e in exits]
        if not exits or exits != sorted(set(exits)) or exits[0] < 1 or exits[-1] != depth:
            raise ValueError(
                f"trackers/models/dytrack.py: exits {exits} must be ascending, unique, >= 1 and end at depth "
                f"{depth} (the deepest exit always answers); e.g. exits: [2, 6, {depth}]"
            )
        if iou_token not in ("joint", "readout"):
            raise ValueError(f"iou_token must be joint | readout, got {iou_token!r}")
        if iou_attends not in ("all", "search", "template"):
            raise ValueError(f"iou_attends must be all | search | template, got {iou_attends!r}")
        if iou_token == "joint" and iou_attends != "all":
            raise ValueError(
                "iou_attends applies to iou_token: readout; a joint IoU token takes part in the backbone's "
                "full attention (set iou_attends: all or iou_token: readout)"
            )
        self.exits = tuple(exits)
        self.iou_token = iou_token
        self.iou_token_shared = iou_token_shared
        self.iou_attends = iou_attends
        num_exits = len(exits)
        num_tokens = 1 if iou_token_shared else num_exits
        self.backbone = ostrack_backbone(
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            patch_size=patch_size,
            template_size=template_size,
            search_size=search_size,
            drop_path_rate=drop_path_rate,
            num_extra_tokens=num_tokens if iou_token == "joint" else 0,
        )
        if iou_token == "readout":
            self.iou_queries = nn.Parameter(torch.zeros(1, num_tokens, embed_dim))
            nn.init.trunc_normal_(self.iou_queries, std=0.02)
            self.iou_readouts = nn.ModuleList(IoUReadout(embed_dim, num_heads) for _ in exits)
        self.box_heads = nn.ModuleList(CenterHead(embed_dim, head_channels) for _ in exits)
        self.iou_heads = nn.ModuleList(IoUHead(embed_dim, iou_hidden) for _ in exits)
        self.recycler = FeatureRecycler(recycling, recycling_fusion, num_exits, head_channels, recycling_detach)
        self.kd_projectors = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(embed_dim), nn.Linear(embed_dim, embed_dim)) for _ in exits[:-1]
        )

    @property
    def num_exits(self) -> int:
        return len(self.exits)

    # ------------------------------------------------------------------ driving

    def embed(self, template: Tensor, search: Tensor) -> TokenState:
        return self.backbone.embed(template, search)

    def iter_exits(self, state: TokenState, gamma: Gamma = None) -> Iterator[TrackerOutput]:
        """Yield each exit's output in order; blocks past the exit where the caller stops never run."""
        memory = ExitMemory()
        for k, (_, state) in enumerate(self.run_segments(state, self.exits, gamma=gamma)):
            yield self.exit_output(k, state, memory)

    def exit_output(self, exit_index: int, state: TokenState, memory: ExitMemory | None = None) -> TrackerOutput:
        """Branch ``exit_index`` on the raw (not finalized) state after its blocks, reusing ``memory``.

        aux: score/size/offset maps, ``iou`` (sigmoid of ``score``), ``exit`` (index), ``depth``
        (blocks run), ``search_tokens`` (raw, before the final norm: the self-distillation representation),
        ``backbone_feat`` (the finalized sequence).
        """
        out = self.head(self.finalize(state), exit_index=exit_index, memory=memory)
        out.aux["search_tokens"] = state.search_tokens
        return out

    def head(self, state: TokenState, exit_index: int = -1, memory: ExitMemory | None = None) -> TrackerOutput:
        """Box and IoU heads of one exit on a finalized state (``memory``: earlier exits of the same frame;
        none means no recycled input, which equals the zero-initialised recycler)."""
        head_input_check(state, "DyTrack.head")
        k = exit_index % self.num_exits
        box_head = self.box_heads[k]
        stems = box_head.stem(state.search_map())
        if memory is None:
            fused = stems
        elif len(memory.stems) != k:
            raise ValueError(f"DyTrack.head: exit {k} got the memory of {len(memory.stems)} earlier exits; use iter_exits")
        else:
            fused = self.recycler(k, stems, memory)
        score_map, size_map, offset_map = box_head.from_stems(fused)
        logit = self.iou_heads[k](self.iou_token_state(state, k))
        aux = {
            "score_map": score_map,
            "size_map": size_map,
            "offset_map": offset_map,
            "iou": logit.sigmoid(),
            "exit": k,
            "depth": self.exits[k],
            "backbone_feat": state.tokens,
        }
        return TrackerOutput(boxes=CenterHead.decode(score_map, size_map, offset_map), score=logit, aux=aux)

    def iou_token_state(self, state: TokenState, exit_index: int) -> Tensor:
        """(B, C): the IoU token's state at this exit (joint: the token in the sequence; readout: the query's read-out)."""
        slot = 0 if self.iou_token_shared else exit_index
        if self.iou_token == "joint":
            return state.extra_tokens[:, slot]
        parts = {
            "all": state.tokens[:, : state.num_template + state.num_search],
            "search": state.search_tokens,
            "template": state.template_tokens,
        }
        query = self.iou_queries[:, slot : slot + 1].expand(state.tokens.shape[0], -1, -1)
        return self.iou_readouts[exit_index](query, parts[self.iou_attends])

    def forward_exits(self, template: Tensor, search: Tensor) -> list[TrackerOutput]:
        """Every exit's output (training: no exiting)."""
        return list(self.iter_exits(self.embed(template, search)))

    def forward_state(self, state: TokenState, *, gamma: Gamma = None, **_: object) -> TrackerOutput:
        """The deepest exit's output, with every exit's under ``aux['exits']``."""
        outputs = list(self.iter_exits(state, gamma))
        deepest = outputs[-1]
        deepest.aux["exits"] = outputs
        return deepest

    def forward(self, template: Tensor, search: Tensor) -> TrackerOutput:
        return self.forward_state(self.embed(template, search))


def convert_ostrack_state_dict(state: StateDict, model: nn.Module) -> StateDict:
    """An OSTrack (or CompressTracker student) state dict -> DyTrack names; idempotent on DyTrack names.

    The OSTrack ``box_head`` initialises every exit's box head (the deepest exit gets the trained
    head; shallow exits start from it, which beats a random head for a trained backbone); the parts
    an OSTrack lacks (IoU token and heads, recycler, projectors) keep the model's own initial values.
    """
    state = convert_compresstracker_student(state, model)
    if not any(k.startswith(OSTRACK_HEAD_PREFIX) for k in state) or any(k.startswith(EXIT_HEADS_PREFIX) for k in state):
        return state
    out = {k: v for k, v in state.items() if not k.startswith(OSTRACK_HEAD_PREFIX)}
    head = {k[len(OSTRACK_HEAD_PREFIX) :]: v for k, v in state.items() if k.startswith(OSTRACK_HEAD_PREFIX)}
    for i in range(model.num_exits):
        out.update({f"{EXIT_HEADS_PREFIX}{i}.{k}": v for k, v in head.items()})
    for k, v in model.state_dict().items():
        out.setdefault(k, v)
    return out


register_family("dytrack", networks=(DyTrack,), convert=convert_ostrack_state_dict)
