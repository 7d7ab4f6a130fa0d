"""Result files exactly as the toolkits and evaluation servers take them (spec tracking_ecosystem §5).

The raw folder (``<dir>/<seq>.txt`` + ``<seq>_time.txt``, pytracking's runner format) is the one this
suite writes while tracking; the LaSOT toolkit folder and the GOT-10k / TrackingNet submission zips
are exported from it, so every format goes through one reader.
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

METRICS_FILE = "metrics.json"  # the test scores `lightning test` writes next to the raw results

FLOAT_FORMAT = "%.4f"
TIME_SUFFIX = "_time"
PER_FRAME_DIR = "per_frame"
"""Sub-folder of a raw folder with ``<seq>/<name>.txt``: per-frame values a method records besides boxes
and times (e.g. an early-exit index). Kept out of the raw folder itself, so toolkits and
``finished_sequences`` only ever see boxes and times there."""


def _format_rows(values: np.ndarray, delimiter: str, fmt: str) -> str:
    buffer = io.StringIO()
    np.savetxt(buffer, values, delimiter=delimiter, fmt=fmt)
    return buffer.getvalue()


def _write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file so an interrupted run never leaves a half-written result."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _boxes(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be (L, 4) frame xywh, got shape {boxes.shape}")
    return boxes


def write_raw_results(
    out_dir: str | Path,
    seq_name: str,
    boxes: np.ndarray,
    times: np.ndarray | None = None,
    integer: bool = False,
) -> Path:
    """pytracking raw results: TAB-separated boxes and one time per line.

    ``integer=True`` truncates like the official runner (``astype(int)``), which shifts boxes by up
    to -1 px; the default keeps ``%.4f`` floats. The time file is written first, so the box file
    existing means the sequence is finished (see ``finished_sequences``).
    """
    out_dir = Path(out_dir)
    boxes = _boxes(boxes)
    if times is not None:
        _write_atomic(out_dir / f"{seq_name}{TIME_SUFFIX}.txt",
                      _format_rows(np.asarray(times, dtype=np.float64).reshape(-1, 1), "\t", "%f"))
    text = _format_rows(boxes.astype(np.int64), "\t", "%d") if integer else _format_rows(boxes, "\t", FLOAT_FORMAT)
    path = out_dir / f"{seq_name}.txt"
    _write_atomic(path, text)
    return path


def write_per_frame_values(out_dir: str | Path, seq_name: str, values: dict[str, np.ndarray]) -> list[Path]:
    """``<out_dir>/per_frame/<seq>/<name>.txt``, one value per frame (``nan`` where none was recorded)."""
    paths = []
    for name, column in values.items():
        path = Path(out_dir) / PER_FRAME_DIR / seq_name / f"{name}.txt"
        _write_atomic(path, _format_rows(np.asarray(column, dtype=np.float64).reshape(-1, 1), "\t", "%g"))
        paths.append(path)
    return paths


def read_per_frame_values(out_dir: str | Path, seq_name: str) -> dict[str, np.ndarray]:
    """Every per-frame column written for ``seq_name`` (empty when the method records none)."""
    folder = Path(out_dir) / PER_FRAME_DIR / seq_name
    return {path.stem: np.loadtxt(path, dtype=np.float64, ndmin=1) for path in sorted(folder.glob("*.txt"))}


def read_raw_results(path: str | Path) -> np.ndarray:
    """(L, 4) float64 boxes from a TAB-, comma- or space-separated file of ints or floats."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no result file; run the tracker on this sequence or drop it from the list")
    for delimiter in ("\t", ",", None):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # an empty file is a valid 0-frame result
                values = np.loadtxt(path, delimiter=delimiter, dtype=np.float64, ndmin=2)
        except ValueError:
            continue
        if values.size == 0:
            return np.zeros((0, 4))
        if values.shape[1] == 4:
            return values
    raise ValueError(f"{path}: expected one 'x,y,w,h' line per frame (TAB or comma separated)")


def read_times(path: str | Path) -> np.ndarray:
    """Per-frame seconds from a ``<seq>_time.txt`` (one value per line)."""
    return np.loadtxt(path, dtype=np.float64, ndmin=1).reshape(-1)


def finished_sequences(results_dir: str | Path) -> set[str]:
    """Names of the sequences that already have a box file, so a rerun can skip them."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        return set()
    return {p.stem for p in results_dir.glob("*.txt") if not p.stem.endswith(TIME_SUFFIX)}


def _sequences(raw_dir: Path, sequences: Iterable[str] | None) -> list[str]:
    names = sorted(finished_sequences(raw_dir)) if sequences is None else list(sequences)
    if not names:
        raise FileNotFoundError(f"{raw_dir}: no <seq>.txt result files to export; point at a raw results folder")
    return names


def export_lasot_toolkit(
    raw_dir: str | Path, toolkit_root: str | Path, tracker_name: str, sequences: Iterable[str] | None = None
) -> Path:
    """LaSOT MATLAB toolkit layout: ``<root>/tracking_results/<Tracker>_tracking_result/<seq>.txt``."""
    raw_dir = Path(raw_dir)
    out = Path(toolkit_root) / "tracking_results" / f"{tracker_name}_tracking_result"
    for seq in _sequences(raw_dir, sequences):
        _write_atomic(out / f"{seq}.txt", _format_rows(read_raw_results(raw_dir / f"{seq}.txt"), ",", FLOAT_FORMAT))
    return out


def pack_got10k_submission(
    raw_dir: str | Path, zip_path: str | Path, sequences: Iterable[str] | None = None
) -> Path:
    """GOT-10k server zip: root holds ``<seq>/<seq>_001.txt`` (comma) and ``<seq>/<seq>_time.txt``."""
    raw_dir, zip_path = Path(raw_dir), Path(zip_path)
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        for seq in _sequences(raw_dir, sequences):
            time_file = raw_dir / f"{seq}{TIME_SUFFIX}.txt"
            if not time_file.exists():
                raise FileNotFoundError(f"{time_file}: the GOT-10k server needs per-frame times; "
                                        "write results with times (write_raw_results(..., times=...))")
            boxes = read_raw_results(raw_dir / f"{seq}.txt")
            zf.writestr(f"{seq}/{seq}_001.txt", _format_rows(boxes, ",", FLOAT_FORMAT))
            zf.writestr(f"{seq}/{seq}{TIME_SUFFIX}.txt", _format_rows(read_times(time_file)[:, None], ",", "%f"))
    return zip_path


def pack_trackingnet_submission(
    raw_dir: str | Path, zip_path: str | Path, sequences: Iterable[str] | None = None
) -> Path:
    """TrackingNet server zip: root holds one ``<seq>.txt`` (comma, one line per frame incl. frame 0)."""
    raw_dir, zip_path = Path(raw_dir), Path(zip_path)
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        for seq in _sequences(raw_dir, sequences):
            zf.writestr(f"{seq}.txt", _format_rows(read_raw_results(raw_dir / f"{seq}.txt"), ",", FLOAT_FORMAT))
    return zip_path
