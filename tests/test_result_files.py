"""Result files: written in each toolkit's layout and read back."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from trackers.evaluation.result_files import (
    export_lasot_toolkit,
    finished_sequences,
    pack_got10k_submission,
    pack_trackingnet_submission,
    read_raw_results,
    read_times,
    write_raw_results,
)

BOXES = np.array([[10.25, 20.5, 30.0, 40.75], [-3.7, 5.9, 12.2, 0.0], [100.0, 200.0, 1.5, 2.5]])
TIMES = np.array([0.5, 0.01, 0.02])


def _raw_dir(tmp_path: Path) -> Path:
    raw = tmp_path / "raw"
    write_raw_results(raw, "airplane-1", BOXES, TIMES)
    write_raw_results(raw, "GOT-10k_Test_000002", BOXES[:2] + 1, TIMES[:2])
    return raw


def test_raw_results_round_trip_as_floats_and_as_truncated_integers(tmp_path: Path) -> None:
    path = write_raw_results(tmp_path, "seq", BOXES, TIMES)
    assert path == tmp_path / "seq.txt"
    assert all(line.count("\t") == 3 for line in path.read_text().splitlines())
    np.testing.assert_allclose(read_raw_results(path), BOXES, atol=1e-4)
    np.testing.assert_allclose(read_times(tmp_path / "seq_time.txt"), TIMES)
    ints = write_raw_results(tmp_path / "int", "seq", BOXES, integer=True)
    assert "." not in ints.read_text()
    np.testing.assert_array_equal(read_raw_results(ints), np.trunc(BOXES))  # official runner: truncation
    assert not (tmp_path / "int" / "seq_time.txt").exists()


def test_reader_accepts_the_toolkits_separators_and_rejects_other_shapes(tmp_path: Path) -> None:
    (tmp_path / "comma.txt").write_text("1.5,2,3,4\n5,6,7,8.25\n")
    (tmp_path / "tab_int.txt").write_text("1\t2\t3\t4\n")
    (tmp_path / "spaces.txt").write_text("1 2 3 4\n5 6 7 8\n")
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "three.txt").write_text("1,2,3\n")
    np.testing.assert_array_equal(read_raw_results(tmp_path / "comma.txt"), [[1.5, 2, 3, 4], [5, 6, 7, 8.25]])
    assert read_raw_results(tmp_path / "tab_int.txt").shape == (1, 4)
    assert read_raw_results(tmp_path / "spaces.txt").shape == (2, 4)
    assert read_raw_results(tmp_path / "empty.txt").shape == (0, 4)
    with pytest.raises(ValueError, match="three.txt"):
        read_raw_results(tmp_path / "three.txt")
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_raw_results(tmp_path / "missing.txt")


def test_finished_sequences_lists_box_files_only(tmp_path: Path) -> None:
    assert finished_sequences(tmp_path / "nothing") == set()
    raw = _raw_dir(tmp_path)
    (raw / "half_time.txt").write_text("0.1\n")  # times alone do not make a sequence finished
    assert finished_sequences(raw) == {"airplane-1", "GOT-10k_Test_000002"}
    assert not [p for p in raw.iterdir() if p.name.startswith(".")]  # no temporary files left behind


def test_lasot_toolkit_layout_is_comma_separated(tmp_path: Path) -> None:
    out = export_lasot_toolkit(_raw_dir(tmp_path), tmp_path / "toolkit", "DistilTrack")
    assert out == tmp_path / "toolkit" / "tracking_results" / "DistilTrack_tracking_result"
    text = (out / "airplane-1.txt").read_text()
    assert len(text.splitlines()) == len(BOXES) and "\t" not in text
    np.testing.assert_allclose(np.loadtxt(out / "airplane-1.txt", delimiter=","), BOXES, atol=1e-4)


def test_got10k_zip_holds_one_folder_per_sequence(tmp_path: Path) -> None:
    raw = _raw_dir(tmp_path)
    zip_path = pack_got10k_submission(raw, tmp_path / "got.zip")
    with zipfile.ZipFile(zip_path) as zf:
        assert set(zf.namelist()) == {f"{s}/{s}{suffix}.txt" for s in ("airplane-1", "GOT-10k_Test_000002")
                                      for suffix in ("_001", "_time")}
        boxes = zf.read("airplane-1/airplane-1_001.txt").decode().splitlines()
        times = zf.read("GOT-10k_Test_000002/GOT-10k_Test_000002_time.txt").decode().splitlines()
    assert len(boxes) == len(BOXES) and len(times) == 2
    np.testing.assert_allclose([float(v) for v in boxes[1].split(",")], BOXES[1], atol=1e-4)
    (raw / "airplane-1_time.txt").unlink()
    with pytest.raises(FileNotFoundError, match="airplane-1_time.txt"):
        pack_got10k_submission(raw, tmp_path / "again.zip")


def test_trackingnet_zip_holds_flat_sequence_files(tmp_path: Path) -> None:
    zip_path = pack_trackingnet_submission(_raw_dir(tmp_path), tmp_path / "tn.zip", sequences=["airplane-1"])
    with zipfile.ZipFile(zip_path) as zf:
        assert zf.namelist() == ["airplane-1.txt"]
        lines = zf.read("airplane-1.txt").decode().splitlines()
    assert len(lines) == len(BOXES) and all(line.count(",") == 3 for line in lines)


class _CountingTracker:
    """Records an 'exit' per frame that depends on the frame, as an early-exit tracker would."""

    name = "counting"

    def initialize(self, frame: np.ndarray, box_xywh: np.ndarray) -> None:
        self.box = np.asarray(box_xywh, dtype=np.float64)

    def track(self, frame: np.ndarray):  # noqa: ANN201 - a TrackResult
        from trackers.inference.online import TrackResult

        return TrackResult(self.box, extras={"exit": float(frame[0, 0, 0] % 3)})


class _Frames:
    def __len__(self) -> int:
        return 5

    def load_frame(self, index: int) -> np.ndarray:
        return np.full((4, 4, 3), index, dtype=np.uint8)


def test_per_frame_extras_are_carried_and_stored_beside_the_raw_results(tmp_path: Path) -> None:
    """A tracker's per-frame values reach the OPE run (NaN for frame 0) and a sub-folder the toolkits never read."""
    from trackers.evaluation.result_files import read_per_frame_values, write_per_frame_values
    from trackers.inference.ope import run_sequence

    run = run_sequence(_CountingTracker(), _Frames(), np.array([1.0, 2.0, 3.0, 4.0]))
    np.testing.assert_array_equal(run.extras["exit"][1:], [1.0, 2.0, 0.0, 1.0])
    assert np.isnan(run.extras["exit"][0])
    raw = tmp_path / "raw"
    write_per_frame_values(raw, "car-1", run.extras)
    write_raw_results(raw, "car-1", run.boxes, run.times)
    write_raw_results(raw, "car-10", run.boxes, run.times)
    assert finished_sequences(raw) == {"car-1", "car-10"}
    back = read_per_frame_values(raw, "car-1")
    assert back.keys() == {"exit"}
    np.testing.assert_array_equal(back["exit"], run.extras["exit"])
    assert read_per_frame_values(raw, "car-10") == {}
