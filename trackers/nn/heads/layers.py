"""Layer stacks shared by the prediction heads, built with the official module nesting.

The nesting (``Sequential`` indices) is what fixes the state-dict key names, so official
checkpoints load by name: ``conv_bn_relu`` gives ``.0`` conv / ``.1`` BN, ``mlp_layers`` gives
``layers.<i>.0`` Linear / ``layers.<i>.1`` norm for hidden layers.
"""

from __future__ import annotations

from torch import Tensor, nn

CONV_KERNEL = 3


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 conv (padding 1, bias) -> BatchNorm2d -> ReLU (STARK/MixFormer/OSTrack head unit)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=CONV_KERNEL, padding=CONV_KERNEL // 2, bias=True),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def mlp_layers(in_dim: int, hidden_dim: int, out_dim: int, num_layers: int, layer_norm: bool) -> nn.ModuleList:
    """Official ``MLP`` / ``MlpHead`` layer list.

    Hidden layers are ``Sequential(Linear, [LayerNorm], ReLU)``. The last layer is
    ``Sequential(Linear, LayerNorm)`` when ``layer_norm`` (MixFormerV2's box head normalises its
    logits), else a bare ``Linear`` (score heads).
    """
    if num_layers < 1:
        raise ValueError(f"an MLP needs at least one layer, got num_layers={num_layers}")
    dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
    layers = nn.ModuleList()
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        linear = nn.Linear(d_in, d_out)
        norm = [nn.LayerNorm(d_out)] if layer_norm else []
        if i < num_layers - 1:
            layers.append(nn.Sequential(linear, *norm, nn.ReLU(inplace=True)))
        else:
            layers.append(nn.Sequential(linear, *norm) if layer_norm else linear)
    return layers


def run_layers(layers: nn.ModuleList, x: Tensor) -> Tensor:
    """Apply a layer list in order (ModuleList has no forward)."""
    for layer in layers:
        x = layer(x)
    return x
