"""Per-frame precision error without drift: the same search crops (around the jittered ground truth of
every 5th SynthTrack test frame) through fp32, bf16 throughout, bf16 (heads and patch embedding fp32, the
default) and int8; the largest box-coordinate error against fp32, in search-crop pixels. An online run's AUC adds the
drift a few sub-pixel differences can start on short sequences; this isolates the arithmetic.

    python scripts/precision_error.py    (after the miniature chains: their stage.json records name the models)
"""


import cv2
import numpy as np
import torch
from lightning_app.config_loading import build_model_from_configs
from lightning_app.commands.track import load_module_weights
from trackers.inference.runtime import apply_runtime, AutocastNetwork
from trackers.geometry.crops import crop_square
from datamodules.readers import build_reader
from precision_drift import STAGES, stage_model  # scripts/: the trained miniatures' stage records
MODELS = {family: stage_model(family) for family in STAGES}
reader = build_reader("synthtrack", "data/synthtrack", split="test", config_key="data/synthtrack")
rng = np.random.default_rng(0)
for fam, (configs, ckpt) in MODELS.items():
    def tracker(variant):
        module = build_model_from_configs(configs)
        load_module_weights(module, ckpt)
        module.eval()
        t = module.build_tracker()
        if variant == "bf16_everywhere":
            t.network = AutocastNetwork(t.network, "cpu", torch.bfloat16, fp32_modules=())
        elif variant != "fp32":
            apply_runtime(t, variant)
        return t
    variants = ["fp32", "bf16_everywhere", "bf16", "int8"]
    ts = {v: tracker(v) for v in variants}
    errs = {v: [] for v in variants[1:]}
    def load(s, f):
        return cv2.cvtColor(cv2.imread(str(reader.frame_path(s, f))), cv2.COLOR_BGR2RGB)
    for s in range(reader.num_sequences):
        info = reader.sequence_info(s)
        boxes = np.asarray(info.boxes, dtype=np.float64)
        f0 = load(s, 0)
        for t in ts.values():
            t.initialize(f0, boxes[0])
        for f in range(5, len(boxes), 5):
            if boxes[f][2] < 2 or boxes[f][3] < 2:
                continue  # target absent
            frame = load(s, f)
            center_box = boxes[f] + np.r_[rng.normal(0, 0.1, 2) * boxes[f][2:], 0, 0]
            crop = crop_square(frame, center_box, ts["fp32"].search_factor, ts["fp32"].search_size)
            search = ts["fp32"]._to_input(crop.image)
            with torch.inference_mode():
                ref = ts["fp32"].predict(search)[0].float()
                for v in variants[1:]:
                    got = ts[v].predict(search)[0].float()
                    errs[v].append(float((got - ref).abs().max()) * ts["fp32"].search_size)
    print(fam, {v: f"mean {np.mean(e):.3f} px, p95 {np.percentile(e, 95):.3f}, >2px {np.mean(np.array(e) > 2) * 100:.1f}%" for v, e in errs.items()}, flush=True)
