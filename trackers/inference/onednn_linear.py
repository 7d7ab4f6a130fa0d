"""fp32 Linear layers through oneDNN with their weights packed once: the same fp32 arithmetic, faster on some CPUs.

torch's ``nn.Linear`` on CPU calls its BLAS (MKL's sgemm on x86 builds). On AMD CPUs with AVX-512, MKL does not
use AVX-512 and runs at half of what oneDNN reaches with the same fp32 operands: measured on a 2-core EPYC of
family 26 (Zen 5) over five ViT Linear shapes, ``F.linear`` 182-214 GFLOP/s, oneDNN with a packed weight
461-500 GFLOP/s; whole networks per frame 1.8-2.1x. On an AVX2-only EPYC the two tie (85-103 vs 82-107). So
:func:`trackers.inference.runtime.fp32_linear_engine` picks oneDNN on AMD CPUs with AVX-512 only.
Outputs differ from MKL's by the order of the fp32 sums (largest difference over whole networks: 2e-7).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from trackers.errors import SetupError


def onednn_linear_available() -> bool:
    """Whether this torch build has oneDNN and its packed-weight Linear op (what Inductor uses on CPU)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


class OneDNNLinear(nn.Module):
    """An inference copy of an ``nn.Linear``: the weight packed for oneDNN once, fp32 in and out, no autograd.

    The packed weight is an opaque oneDNN tensor held as a plain attribute (not a parameter or buffer), so
    ``state_dict`` and parameter counts do not see it; the module is built from trained weights, never trained.
    """

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach()
        if weight.device.type != "cpu" or weight.dtype != torch.float32:
            raise SetupError(f"oneDNN fp32 Linear: the layer is {weight.dtype} on {weight.device}; it runs fp32 on CPU")
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.packed_weight = torch.ops.mkldnn._reorder_linear_weight(weight, None)
        self.bias = None if linear.bias is None else linear.bias.detach().clone()

    def forward(self, x: Tensor) -> Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed_weight, self.bias, "none", [], "")

    def dense_linear(self) -> nn.Linear:
        """The ``nn.Linear`` this layer computes (its weight unpacked)."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        with torch.no_grad():
            linear.weight.copy_(self.packed_weight.to_dense())
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        return linear

    def __deepcopy__(self, memo: dict) -> OneDNNLinear:
        """Re-packed from the unpacked weight: an opaque oneDNN tensor has no storage to copy."""
        return OneDNNLinear(self.dense_linear())

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def onednn_linear_network(network: nn.Module) -> nn.Module:
    """A copy of ``network`` (left as it is) whose ``nn.Linear`` layers run through :class:`OneDNNLinear`."""
    if not onednn_linear_available():
        raise SetupError("oneDNN fp32 Linear: this torch build has no oneDNN (torch.backends.mkldnn); "
                         "set DISTILTRACK_FP32_LINEAR=torch")
    network = copy.deepcopy(network).eval()
    for module in list(network.modules()):
        for name, child in list(module.named_children()):
            if type(child) is nn.Linear:  # subclasses (quantised, LoRA-style) keep their own forward
                setattr(module, name, OneDNNLinear(child))
    return network
