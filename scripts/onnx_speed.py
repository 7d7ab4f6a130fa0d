"""onnxruntime vs PyTorch fp32 per-frame network speed of every family at the CPU-smoke size, in one run.

    PYTHONPATH=. python scripts/onnx_speed.py [--frames 50]

Untrained tiny networks (speed does not depend on the weights); see ``trackers.deploy.speed``.
"""

from __future__ import annotations

import argparse
import warnings

import torch

from lightning_app.config_loading import build_model_from_configs
from trackers.deploy.speed import compare_backends

SMOKE = "configs/presets/cpu_smoke.yaml"
FAMILIES = {
    "OSTrack (4 blocks, CE)": ["configs/ostrack_256.yaml", SMOKE, "configs/presets/ostrack_tiny.yaml"],
    "CompressTracker-4": ["configs/compresstracker_4.yaml", SMOKE, "configs/presets/cpu_smoke_compresstracker/student.yaml"],
    "MixFormerV2-S (cached)": ["configs/mixformerv2_s_score.yaml", SMOKE],
    "MixViT-B (12 blocks)": ["configs/mixvit_b.yaml", SMOKE],
    "DyTrack (exits 1, 2, 4)": ["configs/dytrack_256.yaml", SMOKE, "configs/presets/dytrack_tiny.yaml"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=50)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for label, configs in FAMILIES.items():
        result = compare_backends(build_model_from_configs(configs), args.frames)
        print(f"{label:26s} PyTorch {result.torch_ms:7.2f} ms  onnxruntime {result.onnxruntime_ms:7.2f} ms  "
              f"onnxruntime/PyTorch speed {result.speedup:.2f}x", flush=True)


if __name__ == "__main__":
    main()
