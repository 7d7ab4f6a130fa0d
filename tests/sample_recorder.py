"""A callback for subprocess tests: records a fingerprint of every training sample per rank."""

from __future__ import annotations

import json
import os
from pathlib import Path

import lightning as L


class SampleRecorder(L.Callback):
    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.fingerprints: list[float] = []
        self.dtypes: set[str] = set()  # what the model receives (after the data module's device-side hook)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        # The search-box coordinates identify a drawn sample (frame choice + jitter) to float precision.
        self.fingerprints += [round(float(v), 6) for v in batch["search_box"].sum(dim=1)]
        self.dtypes |= {str(batch["search"].dtype), str(batch["template"].dtype)}

    def on_train_end(self, trainer, pl_module) -> None:  # noqa: ANN001
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"rank{trainer.global_rank}.json"
        path.write_text(json.dumps({"world": trainer.world_size, "pid": os.getpid(), "samples": self.fingerprints,
                                   "dtypes": sorted(self.dtypes)}))
