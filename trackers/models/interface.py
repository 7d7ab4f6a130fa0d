"""The block-driving interface every tracker family offers (OSTrack, CompressTracker students, MixViT, MixFormerV2).

A method that swaps stages, exits early, fades blocks or mimics features talks to any family the
same way (the tracking counterpart of timm's ``forward_intermediates`` + ``forward_head``)::

    state = net.embed(*inputs)                                  # the family's forward inputs
    state = net.run_blocks(state, 0, k)                         # own blocks [0, k)
    state = net.run_blocks(state, k, m, blocks=teacher.backbone.blocks, gamma=g)   # lent blocks
    for end, state in net.run_segments(state, (2, 6, 12)):      # exits; ``break`` stops early
        out = net.head(net.finalize(state))
    out = net.head(net.finalize(state))                         # TrackerOutput

``forward`` of every family is ``embed`` -> all blocks -> ``finalize`` -> ``head``. Heads read the
search map, templates and extra tokens of the ``TokenState`` by name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import Any

from torch import nn

from trackers.nn.vit import Gamma, OneStreamViT, TokenState
from trackers.types import TrackerOutput


class BlockDrivenNetwork(nn.Module, ABC):
    """A tracker network made of a ``OneStreamViT`` backbone and heads on its final token state."""

    backbone: OneStreamViT

    @abstractmethod
    def embed(self, *inputs: Any, **options: Any) -> TokenState:
        """Embed the family's forward inputs (templates, search) into the first token state."""

    @abstractmethod
    def head(self, state: TokenState, **options: Any) -> TrackerOutput:
        """The heads on a finalized state; options are the family's forward head options."""

    def run_blocks(self, state: TokenState, start: int, end: int, **options: Any) -> TokenState:
        """Blocks [start, end) of the backbone or lent ``blocks=``; options (``blocks``, ``gamma``,
        ``ce_keep_ratios``) as ``OneStreamViT.run_blocks``."""
        return self.backbone.run_blocks(state, start, end, **options)

    def run_segments(self, state: TokenState, ends: Iterable[int], **options: Any) -> Iterator[tuple[int, TokenState]]:
        """Yield ``(end, state after blocks [0, end))`` at each exit in ``ends`` (ascending); options
        as ``run_blocks``. Blocks past the last exit reached are never run: leaving the loop is the early stop.
        """
        done = 0
        for end in sorted(set(ends)):
            if not 0 < end <= self.backbone.depth:
                raise ValueError(f"exit after {end} blocks is outside 1..{self.backbone.depth}")
            state = self.run_blocks(state, done, end, **options)
            done = end
            yield end, state

    def finalize(self, state: TokenState) -> TokenState:
        """Final norm and CE restore (non-destructive, so any exit may finalize)."""
        return self.backbone.finalize(state)

    def forward_state(
        self, state: TokenState, *, gamma: Gamma = None, return_features: Iterable[int] = (), **head_options: Any
    ) -> TrackerOutput:
        """All blocks, finalize, heads; ``features`` holds the raw tokens after ``return_features`` blocks."""
        out = self.backbone.forward_state(state, gamma, return_features)
        pred = self.head(out.state, **head_options)
        pred.features = out.features
        return pred


def head_input_check(state: TokenState, where: str) -> None:
    """Heads read finalized states only (normed tokens, search restored to its grid)."""
    if not state.final:
        raise ValueError(f"{where}: the head needs a finalized state; pass finalize(state)")

