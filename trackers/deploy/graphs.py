"""The per-frame network of every family as tensor-in, tensor-out modules: what is exported to ONNX.

A tracker calls its network with Python structures (a ``TokenState``, a ``TemplateCache``, keyword
options); an ONNX graph takes and returns plain tensors. Each ``GraphSpec`` here is one exported graph:
a module built from the family's own methods (no copy of a forward), its input and output names, and
the shapes of its inputs for batch 1. ``family_graphs`` lists them per family:

- centre head (OSTrack, CompressTracker): ``network``: template, search -> score_map, size_map,
  offset_map. Candidate elimination is inside the graph (sort + gather + scatter trace statically at
  batch 1), at one keep rate fixed at export (None: each CE block's configured ratio).
- MixFormer (MixFormerV2, MixViT): ``template``: template, online_template -> template_keys,
  template_values (every block's template keys/values, stacked); ``search``: search, template_keys,
  template_values -> boxes (+ score with a score head). The exact template cache survives export.
- DyTrack: ``embed``: template, search -> tokens; ``exit_k``: tokens (+ recycled features of earlier
  exits) -> tokens after the segment, score/size/offset maps and the exit's IoU score (+ its features
  for later exits).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from trackers.models.dytrack import DyTrack, ExitMemory, recycling_sources
from trackers.models.mixformerv2 import MixFormerV2
from trackers.models.mixvit import MixViT
from trackers.models.ostrack import OSTrack
from trackers.nn.heads.center import BRANCHES
from trackers.nn.template_cache import TemplateCache, run_blocks_with_cache

CENTER_OUTPUTS = ("score_map", "size_map", "offset_map")
RECYCLED = "recycled_{}"
"""DyTrack: exit k's recycled head features, the branches (ctr, offset, size) stacked on dim 0."""


@dataclass
class GraphSpec:
    """One exported graph: the module, its input names and batch-1 shapes, its output names."""

    name: str
    module: nn.Module
    inputs: dict[str, tuple[int, ...]]
    outputs: tuple[str, ...]

    def example_inputs(self, generator: torch.Generator | None = None) -> tuple[Tensor, ...]:
        """Random normal inputs of the graph's shapes (the export trace and the check against PyTorch)."""
        return tuple(torch.randn(shape, generator=generator) for shape in self.inputs.values())


def family_of(network: nn.Module) -> str:
    """'center' | 'mixformer' | 'dytrack': which tracker kind runs ``network`` (DyTrack before OSTrack: not a subclass,
    but checked first all the same)."""
    if isinstance(network, DyTrack):
        return "dytrack"
    if isinstance(network, (MixFormerV2, MixViT)):
        return "mixformer"
    if isinstance(network, OSTrack):
        return "center"
    raise TypeError(
        f"ONNX export knows OSTrack, CompressTracker, MixFormerV2, MixViT and DyTrack networks, got {type(network).__name__}"
    )


def image_shape(size: int) -> tuple[int, int, int, int]:
    return (1, 3, size, size)


# ---------------------------------------------------------------------------------------------- centre head


class CenterHeadGraph(nn.Module):
    """OSTrack / CompressTracker: (template, search) -> the three centre-head maps, CE at a fixed keep rate."""

    def __init__(self, network: OSTrack, ce_keep_rate: float | None) -> None:
        super().__init__()
        self.network = network
        self.ce_keep_rate = ce_keep_rate
        mask = network.ce_template_mask(1)
        self.register_buffer("ce_mask", mask if mask is not None else torch.zeros(0, dtype=torch.bool), persistent=False)

    def forward(self, template: Tensor, search: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mask = self.ce_mask if self.ce_mask.numel() else None
        aux = self.network(template, search, ce_template_mask=mask, ce_keep_rate=self.ce_keep_rate).aux
        return tuple(aux[name] for name in CENTER_OUTPUTS)


def center_graphs(network: OSTrack, template_size: int, search_size: int, ce_keep_rate: float | None) -> list[GraphSpec]:
    return [GraphSpec("network", CenterHeadGraph(network, ce_keep_rate),
                      {"template": image_shape(template_size), "search": image_shape(search_size)}, CENTER_OUTPUTS)]


# ---------------------------------------------------------------------------------------------- MixFormer


class TemplateGraph(nn.Module):
    """(template, online_template) -> every block's template keys and values, stacked (depth, 1, heads, Nt, head_dim)."""

    def __init__(self, network: MixFormerV2 | MixViT) -> None:
        super().__init__()
        self.network = network

    def forward(self, template: Tensor, online_template: Tensor) -> tuple[Tensor, Tensor]:
        cache = prepare_template_cache(self.network, template, online_template)
        return torch.stack(cache.keys), torch.stack(cache.values)


def prepare_template_cache(network: MixFormerV2 | MixViT, template: Tensor, online_template: Tensor) -> TemplateCache:
    """MixFormerV2's own ``prepare_templates``; MixViT shares its asymmetric backbone, so the same cache is exact."""
    if isinstance(network, MixFormerV2):
        return network.prepare_templates(template, online_template)
    from trackers.models.mixvit import stack_templates
    from trackers.nn.template_cache import encode_templates

    tokens = network.backbone.embed_templates(stack_templates(template, online_template))
    return encode_templates(network.backbone.blocks, tokens, network.backbone.ce_keep_ratios)


def cache_from_tensors(keys: Tensor, values: Tensor, embed_dim: int) -> TemplateCache:
    """A ``TemplateCache`` from stacked keys/values. The template output tokens are zeros: the heads read only
    the search map and the prediction tokens, never the template tokens (the check against PyTorch shows it)."""
    depth, batch, _, num_template, _ = keys.shape
    placeholder = keys.new_zeros(batch, num_template, embed_dim)
    return TemplateCache(tuple(keys.unbind(0)), tuple(values.unbind(0)), (placeholder,) * depth)


class SearchGraph(nn.Module):
    """(search, template_keys, template_values) -> boxes (1, 4) crop cxcywh (+ score logit (1,) with a score head)."""

    def __init__(self, network: MixFormerV2 | MixViT) -> None:
        super().__init__()
        self.network = network
        self.has_score = bool(getattr(network, "has_score_head", False))

    def forward(self, search: Tensor, template_keys: Tensor, template_values: Tensor) -> tuple[Tensor, ...]:
        net = self.network
        cache = cache_from_tensors(template_keys, template_values, net.backbone.embed_dim)
        if isinstance(net, MixFormerV2):
            out = net.forward_with_cache(cache, search, softmax=True, run_score_head=self.has_score)
        else:
            tokens, _ = run_blocks_with_cache(net.backbone.blocks, cache, net.backbone.embed_search(search))
            out = net.head(net.finalize(net.backbone.layout(tokens)), softmax=True)
        return (out.boxes, out.score) if self.has_score else (out.boxes,)


def mixformer_graphs(network: MixFormerV2 | MixViT, template_size: int, search_size: int) -> list[GraphSpec]:
    backbone = network.backbone
    attn = backbone.blocks[0].attn
    num_template = backbone.num_templates * backbone.num_template_tokens
    kv_shape = (backbone.depth, 1, attn.num_heads, num_template, attn.head_dim)
    search = SearchGraph(network)
    return [
        GraphSpec("template", TemplateGraph(network),
                  {"template": image_shape(template_size), "online_template": image_shape(template_size)},
                  ("template_keys", "template_values")),
        GraphSpec("search", search, {"search": image_shape(search_size), "template_keys": kv_shape,
                                     "template_values": kv_shape},
                  ("boxes", "score") if search.has_score else ("boxes",)),
    ]


# ---------------------------------------------------------------------------------------------- DyTrack


class EmbedGraph(nn.Module):
    """DyTrack: (template, search) -> the first token sequence (1, N, C)."""

    def __init__(self, network: DyTrack) -> None:
        super().__init__()
        self.network = network

    def forward(self, template: Tensor, search: Tensor) -> Tensor:
        return self.network.embed(template, search).tokens


def recycled_inputs(network: DyTrack, exit_index: int) -> list[int]:
    """Earlier exits whose features exit ``exit_index`` reads (its recycling sources)."""
    return recycling_sources(network.recycler.schema, exit_index)


def recycled_output(network: DyTrack, exit_index: int) -> bool:
    """Whether a later exit reads exit ``exit_index``'s features."""
    return any(exit_index in recycled_inputs(network, j) for j in range(exit_index + 1, network.num_exits))


class ExitSegmentGraph(nn.Module):
    """DyTrack exit k: tokens after exit k-1 (+ recycled features) -> tokens after exit k, its maps and IoU score.

    No candidate elimination in DyTrack, so a plain token tensor is the whole state between segments.
    """

    def __init__(self, network: DyTrack, exit_index: int) -> None:
        super().__init__()
        self.network = network
        self.exit_index = exit_index
        self.start = 0 if exit_index == 0 else network.exits[exit_index - 1]
        self.end = network.exits[exit_index]
        self.sources = recycled_inputs(network, exit_index)
        self.emit_tokens = exit_index < network.num_exits - 1
        self.emit_recycled = recycled_output(network, exit_index)

    def forward(self, tokens: Tensor, *recycled: Tensor) -> tuple[Tensor, ...]:
        net, k = self.network, self.exit_index
        state = net.run_blocks(net.backbone.layout(tokens), self.start, self.end)
        memory = ExitMemory(stems=[{} for _ in range(k)], fused=[{} for _ in range(k)])
        pool = memory.fused if net.recycler.schema == "cascade" else memory.stems
        for source, stacked in zip(self.sources, recycled):
            pool[source] = dict(zip(BRANCHES, stacked.unbind(0)))
        out = net.exit_output(k, state, memory)
        results = [state.tokens] if self.emit_tokens else []
        results += [out.aux[name] for name in CENTER_OUTPUTS] + [out.aux["iou"]]
        if self.emit_recycled:
            own = (memory.fused if net.recycler.schema == "cascade" else memory.stems)[k]
            results.append(torch.stack([own[name] for name in BRANCHES]))
        return tuple(results)


def dytrack_graphs(network: DyTrack, template_size: int, search_size: int) -> list[GraphSpec]:
    backbone = network.backbone
    grid = backbone.search_grid
    n_tokens = backbone.num_template_tokens + grid[0] * grid[1] + backbone.num_extra_tokens
    tokens_shape = (1, n_tokens, backbone.embed_dim)
    recycled_shape = (len(BRANCHES), 1, network.recycler.channels, *grid)
    specs = [GraphSpec("embed", EmbedGraph(network),
                       {"template": image_shape(template_size), "search": image_shape(search_size)}, ("tokens",))]
    for k in range(network.num_exits):
        graph = ExitSegmentGraph(network, k)
        inputs = {"tokens": tokens_shape, **{RECYCLED.format(j): recycled_shape for j in graph.sources}}
        outputs = (("tokens_out",) if graph.emit_tokens else ()) + CENTER_OUTPUTS + ("iou",)
        outputs += (RECYCLED.format(k),) if graph.emit_recycled else ()
        specs.append(GraphSpec(f"exit_{k}", graph, inputs, outputs))
    return specs


def family_graphs(network: nn.Module, template_size: int, search_size: int,
                  ce_keep_rate: float | None = None) -> list[GraphSpec]:
    """Every graph of ``network``'s per-frame step, in the order a frame runs them."""
    family = family_of(network)
    if family == "center":
        return center_graphs(network, template_size, search_size, ce_keep_rate)
    if family == "mixformer":
        return mixformer_graphs(network, template_size, search_size)
    return dytrack_graphs(network, template_size, search_size)


def graph_names(graphs: Sequence[GraphSpec]) -> list[str]:
    return [g.name for g in graphs]
