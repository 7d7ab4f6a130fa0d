"""The test-time crop settings every crop tracker shares (template / search size and factor, clipping).

Sizes left at None are the network's own input sizes (its backbone's grids times the patch size),
so a config need not repeat them.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

DEFAULT_CLIP_MARGIN = 10.0  # pixels of the box kept inside the frame (official ``clip_box`` margin)


def network_input_sizes(network: nn.Module) -> tuple[int, int]:
    """(template, search) input side of a one-stream network, read from its backbone."""
    backbone = network.backbone
    return backbone.template_grid[0] * backbone.patch_size, backbone.search_grid[0] * backbone.patch_size


@dataclass
class CropConfig:
    """Template and search crops: side in pixels (None: the network's) and context factor."""

    template_size: int | None = None
    template_factor: float = 2.0
    search_size: int | None = None
    search_factor: float = 4.0
    clip_margin: float = DEFAULT_CLIP_MARGIN

    def sizes(self, network: nn.Module) -> tuple[int, int]:
        """(template, search) sides for ``network``: the given ones, else the network's."""
        if self.template_size is not None and self.search_size is not None:
            return self.template_size, self.search_size
        own = network_input_sizes(network)
        return self.template_size or own[0], self.search_size or own[1]
