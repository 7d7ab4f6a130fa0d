"""Which metric conventions each benchmark is scored with in `lightning test`.

pytracking's rules are what the papers report; GOT-10k val adds the official toolkit's AO/SR;
benchmarks whose test ground truth is withheld (GOT-10k test, TrackingNet test) are scored by
their servers from the submission files, so no local metric runs.
"""

from __future__ import annotations

from typing import Any

from trackers.evaluation.ope_metrics import OPEMetric, build_ope_metric

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


def metrics_for(benchmark: str) -> dict[str, OPEMetric]:
    """Fresh metrics for a benchmark, keyed by convention (unknown benchmarks get pytracking's)."""
    protocols = BENCHMARK_PROTOCOLS.get(benchmark, [("pytracking", {"dataset": benchmark})])
    return {convention: build_ope_metric(convention, **options) for convention, options in protocols}
