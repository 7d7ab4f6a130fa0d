"""Which metric conventions each benchmark is scored with in `lightning test`.

pytracking's rules are what the papers report; GOT-10k val adds the official toolkit's AO/SR;
benchmarks whose test ground truth is withheld (GOT-10k test, TrackingNet test) are scored by
their servers from the submission files, so no local metric runs.
"""

from __future__ import annotations

from typing import Any

from pathlib import Path

from trackers.evaluation.ope_metrics import OPEMetric, build_ope_metric
from trackers.evaluation.result_files import (
    export_lasot_toolkit,
    pack_got10k_submission,
    pack_trackingnet_submission,
)

# benchmark reader type -> [(convention, metric options)]
BENCHMARK_PROTOCOLS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "synthtrack": [("pytracking", {"dataset": "lasot"})],
    "lasot": [("pytracking", {"dataset": "lasot"})],
    "lasot_extension": [("pytracking", {"dataset": "lasot"})],
    "uav123": [("pytracking", {"dataset": "uav"})],
    "got10k_val": [("pytracking", {"dataset": "got10k"}), ("got10k", {})],
    "got10k_test": [],
    "trackingnet": [],
}


def benchmark_key(reader_type: str, split: str | None = None, root: str | None = None) -> str:
    """The protocol name of a test benchmark: GOT-10k's val and test sets are scored differently."""
    if reader_type == "got10k":
        part = split or (Path(root).name if root else "")
        return "got10k_test" if part == "test" else "got10k_val"
    return reader_type


def export_official_results(benchmark: str, raw_dir: Path, tracker_name: str) -> Path | None:
    """Write the benchmark's official submission / toolkit files next to the raw results."""
    if benchmark in ("got10k_val", "got10k_test"):
        return pack_got10k_submission(raw_dir, raw_dir.parent / f"{tracker_name}_got10k_submission.zip")
    if benchmark == "trackingnet":
        return pack_trackingnet_submission(raw_dir, raw_dir.parent / f"{tracker_name}_trackingnet_submission.zip")
    if benchmark in ("lasot", "lasot_extension", "synthtrack"):
        return export_lasot_toolkit(raw_dir, raw_dir.parent / "lasot_toolkit", tracker_name)
    return None


def metrics_for(benchmark: str) -> dict[str, OPEMetric]:
    """Fresh metrics for a benchmark, keyed by convention (unknown benchmarks get pytracking's)."""
    protocols = BENCHMARK_PROTOCOLS.get(benchmark, [("pytracking", {"dataset": benchmark})])
    return {convention: build_ope_metric(convention, **options) for convention, options in protocols}
