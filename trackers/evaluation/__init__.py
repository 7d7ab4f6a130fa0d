"""OPE evaluation: protocol cores (pytracking, got10k, TrackingNet), torchmetrics wrappers, result
files in the toolkits' formats. Offline analysis and plots (matplotlib) live in
``trackers.evaluation.analysis``, imported on demand to keep this package light."""

from trackers.evaluation.metrics_pytracking import InvalidResultsError
from trackers.evaluation.ope_metrics import (
    OPE_METRICS,
    Got10kOPE,
    OPEMetric,
    PytrackingOPE,
    TrackingNetOPE,
    build_ope_metric,
)
from trackers.evaluation.result_files import (
    export_lasot_toolkit,
    finished_sequences,
    pack_got10k_submission,
    pack_trackingnet_submission,
    read_raw_results,
    read_times,
    write_raw_results,
)

__all__ = [
    "OPE_METRICS",
    "Got10kOPE",
    "InvalidResultsError",
    "OPEMetric",
    "PytrackingOPE",
    "TrackingNetOPE",
    "build_ope_metric",
    "export_lasot_toolkit",
    "finished_sequences",
    "pack_got10k_submission",
    "pack_trackingnet_submission",
    "read_raw_results",
    "read_times",
    "write_raw_results",
]
