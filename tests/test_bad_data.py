"""Bad data is reported (file, line) and skipped or redrawn, and the redraws are counted per epoch."""

from __future__ import annotations

from pathlib import Path

import cv2
import lightning as L
import numpy as np
import pytest
import torch

from callbacks.data_health import DataHealthMonitor
from datamodules.datamodule import TrackingDataModule
from datamodules.readers import AnnotationError, build_reader
from datamodules.readers.annotation_files import read_boxes, read_flags
from datamodules.sampler import CausalPairSampler
from tests.tiny_datasets import make_got10k
from trackers.frames import EncodedFrame, FrameReadError

LENGTH = 30
NAMES = [f"GOT-10k_Train_{k:06d}" for k in range(1, 5)]


@pytest.fixture
def got(tmp_path: Path) -> Path:
    return make_got10k(tmp_path / "train", {n: LENGTH for n in NAMES})


def _module(root: Path, **overrides) -> TrackingDataModule:  # noqa: ANN003
    args = dict(datasets=[{"type": "got10k", "root": str(root), "split": None}], val_datasets=None,
                template={"size": 16, "factor": 2.0}, search={"size": 32, "factor": 4.0},
                samples_per_epoch=16, batch_size=4, num_workers=0, pin_memory=False)
    return TrackingDataModule(**(args | overrides))


def test_malformed_lines_are_named_with_file_and_line(tmp_path: Path) -> None:
    gt = tmp_path / "groundtruth.txt"
    gt.write_text("1,2,3,4\n1,2,3,4\n5,6,seven,8\n1,2,3,4\n")
    with pytest.raises(AnnotationError, match=r"groundtruth\.txt' line 3: non-numeric entry in '5,6,seven,8'"):
        read_boxes(gt)
    gt.write_text("1,2,3,4\n1,2,3\n1,2,3,4,5\n")
    with pytest.raises(AnnotationError, match=r"line 2: 3 numbers in '1,2,3', expected 4"):
        read_boxes(gt)
    gt.write_text("\n\n")
    with pytest.raises(AnnotationError, match=r"groundtruth\.txt' is empty"):
        read_boxes(gt)
    flags = tmp_path / "absence.label"
    flags.write_text("0\n0\n0.5\n")
    with pytest.raises(AnnotationError, match=r"absence\.label' line 3"):
        read_flags(flags)
    with pytest.raises(AnnotationError, match=r"cannot read annotation file '.*missing\.txt'"):
        read_boxes(tmp_path / "missing.txt")
    gt.write_text("1\t2\t3\t4\n5 6 7 8\n")  # whitespace-separated files are fine
    np.testing.assert_array_equal(read_boxes(gt), [[1, 2, 3, 4], [5, 6, 7, 8]])


def test_bad_sequences_are_reported_once_and_never_drawn(got: Path) -> None:
    (got / NAMES[1] / "groundtruth.txt").write_text("1,2,3,4\n" * 5 + "1,2,x,4\n" + "1,2,3,4\n" * 24)
    (got / NAMES[2] / "cover.label").write_text("")
    reader = build_reader("got10k", got, split=None)
    with pytest.warns(UserWarning) as record:
        sampler = CausalPairSampler([reader])
    messages = [str(w.message) for w in record]
    assert any(NAMES[1] in m and "groundtruth.txt' line 6" in m for m in messages)
    assert any(NAMES[2] in m and "cover.label' is empty" in m for m in messages)
    assert sampler.skipped == {"got10k": [NAMES[1], NAMES[2]]}
    rng = np.random.default_rng(0)
    assert {sampler.draw(rng).sequence for _ in range(100)} == {0, 3}
    with pytest.raises(AnnotationError, match="line 6"):  # evaluation cannot skip it: the error surfaces
        reader.sequence_info(1)


def test_short_sequences_are_reported_with_their_folder(tmp_path: Path) -> None:
    root = make_got10k(tmp_path / "train", {"GOT-10k_Train_000001": LENGTH, "GOT-10k_Train_000002": 12})
    with pytest.warns(UserWarning, match=r"1 of 2 sequences are never drawn.*'GOT-10k_Train_000002' \(12 frames"):
        sampler = CausalPairSampler([build_reader("got10k", root, split=None)])
    assert sampler.skipped["got10k"] == ["GOT-10k_Train_000002"]


def test_corrupt_and_missing_frames_are_redrawn_with_a_warning(got: Path) -> None:
    for k in range(1, LENGTH + 1):  # every frame of one sequence unreadable: garbage or gone
        frame = got / NAMES[0] / f"{k:08d}.jpg"
        frame.write_bytes(b"definitely not a jpeg") if k % 2 else frame.unlink()
    dm = _module(got)
    dm.setup("fit")
    expected = rf"redrawing after FrameReadError in got10k '{NAMES[0]}'.*{NAMES[0]}/\d{{8}}\.jpg"
    with pytest.warns(UserWarning, match=expected):
        batches = list(dm.train_dataloader())
    redraws = torch.cat([b["redraws"] for b in batches])
    assert redraws.dtype == torch.int64 and redraws.shape == (16,)
    assert int(redraws.sum()) == dm.train_set.redraws > 0


def test_redraw_counts_come_back_from_worker_processes(got: Path) -> None:
    (got / NAMES[0] / "00000001.jpg").write_bytes(b"")
    for k in range(2, LENGTH + 1):
        (got / NAMES[0] / f"{k:08d}.jpg").write_bytes(b"\xff\xd8 truncated")
    dm = _module(got, num_workers=1)
    dm.setup("fit")
    batches = list(dm.train_dataloader())  # the worker prints its warnings; only counts travel back
    assert dm.train_set.redraws == 0  # this process drew nothing: the worker did
    assert int(torch.cat([b["redraws"] for b in batches]).sum()) > 0


class _TinyModule(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.seen = 0

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self.seen += int(batch["redraws"].sum())
        return (self.weight - batch["search"].mean()) ** 2

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_data_health_monitor_logs_redraws_per_epoch(got: Path) -> None:
    for k in range(1, LENGTH + 1):
        (got / NAMES[0] / f"{k:08d}.jpg").write_bytes(b"corrupt")
    dm = _module(got)
    module = _TinyModule()
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[DataHealthMonitor(warn_above=None)])
    with pytest.warns(UserWarning, match="redrawing after FrameReadError"):
        trainer.fit(module, datamodule=dm)
    assert module.seen > 0
    assert float(trainer.callback_metrics["data/redraws"]) == module.seen
    assert float(trainer.callback_metrics["data/skipped_sequences"]) == 0.0


def test_truncated_jpeg_is_not_silently_greyed(tmp_path: Path) -> None:
    path = tmp_path / "frame.jpg"
    rng = np.random.default_rng(0)
    cv2.imwrite(str(path), rng.integers(0, 256, (64, 80, 3), dtype=np.uint8))
    assert EncodedFrame(path).decode().shape == (64, 80, 3)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # an interrupted copy
    frame = EncodedFrame(path)
    assert frame.size == (80, 64)  # the header is intact...
    with pytest.raises(FrameReadError, match=r"frame\.jpg' is a truncated JPEG"):  # ...the pixels are not
        frame.decode()
