"""Every evaluation benchmark end to end: reader -> `Trainer.test` -> raw results -> official files.

Each test builds a tiny dataset in the benchmark's on-disk layout (2 sequences of 6 frames), runs
the network-free first-box baseline through the real OPE loop, and reads the exported files back
the way the toolkit or evaluation server would.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import yaml
from torch import nn

from datamodules.datamodule import EvalBenchmarkSpec, TrackingDataModule
from datamodules.readers import READER_TYPES, build_reader
from datamodules.readers.annotation_files import AnnotationError
from datamodules.readers.base import DatasetRootError
from datamodules.synthtrack import write_synthtrack
from tests.tiny_datasets import (
    frame_box,
    frame_value,
    load_frame,
    make_got10k,
    make_lasot,
    make_trackingnet,
    write_jpeg,
)
from trackers.errors import BadFileError, SetupError
from trackers.evaluation.protocols import BENCHMARK_PROTOCOLS, benchmark_key
from trackers.inference.mixformerv2_tracker import MixFormerTrackerConfig
from trackers.inference.online import FirstBoxTracker, OnlineTracker
from trackers.methods.baselines import FirstBoxBaseline

ROOT = Path(__file__).resolve().parents[1]
LENGTH = 6
TRACKER = "first_box"


class CountingFirstBox(FirstBoxBaseline):
    """The first-box baseline recording the init box of every sequence it actually tracks."""

    def __init__(self, results_dir: str) -> None:
        super().__init__(results_dir=results_dir, resume_results=True)
        self.initialized: list[np.ndarray] = []

    def build_tracker(self) -> OnlineTracker:
        return _RecordingTracker(self.initialized)


class _RecordingTracker(FirstBoxTracker):
    def __init__(self, log: list[np.ndarray]) -> None:
        self.log = log

    def initialize(self, frame: np.ndarray, box_xywh: np.ndarray) -> None:
        self.log.append(box_xywh)
        super().initialize(frame, box_xywh)


def _evaluate(test: dict, results_dir: Path, module: FirstBoxBaseline | None = None) -> dict:
    """Run `Trainer.test` on ``test`` and return the written metrics record."""
    module = module or FirstBoxBaseline(results_dir=str(results_dir))
    dm = TrackingDataModule(test=test, num_workers=0, pin_memory=False)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, default_root_dir=results_dir)
    trainer.test(module, datamodule=dm, verbose=False)
    key = benchmark_key(test["type"], test.get("split"), test["root"])
    return json.loads((results_dir / key / TRACKER / "metrics.json").read_text())


def _rows(text: str, delimiter: str) -> np.ndarray:
    lines = text.strip().splitlines()
    return np.array([[float(v) for v in line.split(delimiter)] for line in lines])


def _check_raw(raw_dir: Path, names: list[str], gt_first: dict[str, np.ndarray]) -> None:
    """pytracking raw files: TAB-separated boxes (frame 0 = init box) and one time per frame."""
    for seq in names:
        boxes = _rows((raw_dir / f"{seq}.txt").read_text(), "\t")
        assert boxes.shape == (LENGTH, 4)
        np.testing.assert_allclose(boxes[0], gt_first[seq], atol=1e-4)
        times = _rows((raw_dir / f"{seq}_time.txt").read_text(), "\t")
        assert times.shape == (LENGTH, 1) and (times >= 0).all()


def _make_uav123(root: Path, lengths: dict[str, int], nan_frames: dict[str, list[int]] | None = None) -> Path:
    """``anno/UAV123/<seq>.txt`` (NaN lines = absent) and ``data_seq/UAV123/<seq>/%06d.jpg``."""
    (root / "anno" / "UAV123").mkdir(parents=True, exist_ok=True)
    for name, length in lengths.items():
        for k in range(length):
            write_jpeg(root / "data_seq" / "UAV123" / name / f"{k + 1:06d}.jpg", frame_value(k))
        gone = set((nan_frames or {}).get(name, []))
        lines = ["NaN,NaN,NaN,NaN" if k in gone else ",".join(f"{v:g}" for v in frame_box(k)) for k in range(length)]
        (root / "anno" / "UAV123" / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return root


# ------------------------------------------------------------------------------ LaSOT layout
@pytest.mark.parametrize("kind", ["lasot", "lasot_extension", "synthtrack"])
def test_lasot_layout_benchmarks_export_the_toolkit_layout(kind: str, tmp_path: Path) -> None:
    root = tmp_path / "data"
    if kind == "synthtrack":
        write_synthtrack(root, num_train=0, num_test=2, length=LENGTH, image_size=(64, 48))
        test = {"type": "synthtrack", "root": str(root), "split": "test"}
    else:
        make_lasot(root, {"zebra-3": LENGTH, "atv-1": LENGTH}, occluded={"atv-1": [4]})
        split_file = tmp_path / "list.txt"
        split_file.write_text("atv-1\nzebra-3\n")
        test = {"type": kind, "root": str(root), "split": None if kind == "lasot" else "test",
                "split_file": str(split_file) if kind == "lasot" else None}
    reader = build_reader(test["type"], test["root"], test["split"], test.get("split_file"))
    names = [reader.sequence_name(i) for i in range(len(reader))]
    gt_first = {n: reader.sequence_info(i).boxes[0] for i, n in enumerate(names)}

    record = _evaluate(test, tmp_path / "results")

    assert record["benchmark"] == kind and set(record["metrics"]) == {"pytracking"}
    assert record["metrics"]["pytracking"]["num_sequences"] == 2
    assert 0.0 < record["metrics"]["pytracking"]["AUC"] <= 100.0
    raw_dir = tmp_path / "results" / kind / TRACKER
    _check_raw(raw_dir, names, gt_first)
    toolkit = tmp_path / "results" / kind / "lasot_toolkit" / "tracking_results" / f"{TRACKER}_tracking_result"
    assert sorted(p.name for p in toolkit.iterdir()) == sorted(f"{n}.txt" for n in names)
    for seq in names:
        boxes = _rows((toolkit / f"{seq}.txt").read_text(), ",")
        assert boxes.shape == (LENGTH, 4)
        np.testing.assert_allclose(boxes, _rows((raw_dir / f"{seq}.txt").read_text(), "\t"))


def test_lasot_extension_takes_every_sequence_folder_sorted(tmp_path: Path) -> None:
    make_lasot(tmp_path / "ext", {"wingsuit-2": 3, "atv-10": 3, "atv-9": 3})
    reader = build_reader("lasot_extension", tmp_path / "ext", split=None)
    assert [reader.sequence_name(i) for i in range(len(reader))] == ["atv-10", "atv-9", "wingsuit-2"]
    assert reader.sequence_class(2) == "wingsuit"
    with pytest.raises(SetupError, match="test.split"):
        build_reader("lasot_extension", tmp_path / "ext", split="train", config_key="data.init_args.test.root")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetRootError, match="data.init_args.test.root"):
        build_reader("lasot_extension", tmp_path / "empty", split=None, config_key="data.init_args.test.root")


# ------------------------------------------------------------------------------ GOT-10k
def test_got10k_val_is_scored_by_both_conventions_and_zipped(tmp_path: Path) -> None:
    write_synthtrack(tmp_path / "got10k", num_train=0, num_test=2, length=LENGTH, image_size=(64, 48),
                     layout="got10k")
    record = _evaluate({"type": "got10k", "root": str(tmp_path / "got10k" / "val"), "split": None},
                       tmp_path / "results")
    assert record["benchmark"] == "got10k_val"
    assert set(record["metrics"]) == {"pytracking", "got10k"}
    assert record["metrics"]["got10k"]["num_sequences"] == 2
    assert 0.0 <= record["metrics"]["got10k"]["AO"] <= 1.0
    names = ["GOT-10k_Val_000001", "GOT-10k_Val_000002"]
    _check_got10k_zip(tmp_path / "results" / "got10k_val" / f"{TRACKER}_got10k_submission.zip", names)


def test_got10k_test_runs_without_metrics_and_exports_the_submission(tmp_path: Path) -> None:
    names = ["GOT-10k_Test_000001", "GOT-10k_Test_000002"]
    make_got10k(tmp_path / "got10k" / "test", {n: LENGTH for n in names}, first_box_only=True)
    record = _evaluate({"type": "got10k", "root": str(tmp_path / "got10k" / "test"), "split": None},
                       tmp_path / "results")
    assert record["benchmark"] == "got10k_test" and record["metrics"] == {}
    _check_raw(tmp_path / "results" / "got10k_test" / TRACKER, names, {n: np.array(frame_box(0)) for n in names})
    boxes = _check_got10k_zip(tmp_path / "results" / "got10k_test" / f"{TRACKER}_got10k_submission.zip", names)
    np.testing.assert_allclose(boxes[names[0]], np.tile(frame_box(0), (LENGTH, 1)), atol=1e-4)


def _check_got10k_zip(zip_path: Path, names: list[str]) -> dict[str, np.ndarray]:
    """The server's layout: one folder per sequence with ``<seq>_001.txt`` and ``<seq>_time.txt``."""
    with zipfile.ZipFile(zip_path) as zf:
        assert sorted(zf.namelist()) == sorted(f"{n}/{n}{s}.txt" for n in names for s in ("_001", "_time"))
        boxes = {n: _rows(zf.read(f"{n}/{n}_001.txt").decode(), ",") for n in names}
        for n in names:
            assert boxes[n].shape == (LENGTH, 4)
            assert _rows(zf.read(f"{n}/{n}_time.txt").decode(), ",").shape == (LENGTH, 1)
    return boxes


# ------------------------------------------------------------------------------ TrackingNet
def test_trackingnet_test_runs_without_metrics_and_zips_flat_files(tmp_path: Path) -> None:
    names = ["aaa_0", "bbb_1"]
    make_trackingnet(tmp_path / "tn", {"TEST": {n: LENGTH for n in names}})
    record = _evaluate({"type": "trackingnet", "root": str(tmp_path / "tn"), "split": "TEST"}, tmp_path / "results")
    assert record["benchmark"] == "trackingnet" and record["metrics"] == {}
    _check_raw(tmp_path / "results" / "trackingnet" / TRACKER, names, {n: np.array(frame_box(0)) for n in names})
    with zipfile.ZipFile(tmp_path / "results" / "trackingnet" / f"{TRACKER}_trackingnet_submission.zip") as zf:
        assert sorted(zf.namelist()) == [f"{n}.txt" for n in names]
        for n in names:
            boxes = _rows(zf.read(f"{n}.txt").decode(), ",")
            assert boxes.shape == (LENGTH, 4)  # frame 0 included
            np.testing.assert_allclose(boxes[0], frame_box(0), atol=1e-4)


# ------------------------------------------------------------------------------ UAV123
def test_uav123_nan_lines_are_absent_frames_and_are_scored(tmp_path: Path) -> None:
    root = _make_uav123(tmp_path / "uav", {"car1": LENGTH, "bike2": LENGTH}, nan_frames={"car1": [2, 3]})
    reader = build_reader("uav123", root, split=None)
    assert [reader.sequence_name(i) for i in range(len(reader))] == ["bike2", "car1"]
    info = reader.sequence_info(1)
    assert len(info) == LENGTH and info.visible.tolist() == [True, True, False, False, True, True]
    assert reader.frame_path(1, 0) == root / "data_seq" / "UAV123" / "car1" / "000001.jpg"

    record = _evaluate({"type": "uav123", "root": str(root), "split": None}, tmp_path / "results")
    assert record["benchmark"] == "uav123" and set(record["metrics"]) == {"pytracking"}
    assert np.isfinite(list(record["metrics"]["pytracking"].values())).all()
    _check_raw(tmp_path / "results" / "uav123" / TRACKER, ["bike2", "car1"],
               {n: np.array(frame_box(0)) for n in ("bike2", "car1")})


def test_uav123_frame_ranges_map_sub_sequences_into_a_shared_folder(tmp_path: Path) -> None:
    root = _make_uav123(tmp_path / "uav", {"bird1": 8})
    anno = root / "anno" / "UAV123"
    (anno / "bird1.txt").rename(anno / "bird1_2.txt")
    (anno / "bird1_2.txt").write_text("".join(f"{','.join(f'{v:g}' for v in frame_box(k))}\n" for k in range(3)))
    (anno / "bird1_1.txt").write_text("1,2,3,4\n" * 4)
    ranges = tmp_path / "ranges.json"
    ranges.write_text(json.dumps({"bird1_1": {"folder": "bird1", "start": 1, "end": 4},
                                  "bird1_2": {"folder": "bird1", "start": 5, "end": 7}}))

    with pytest.raises(DatasetRootError, match="options.frame_ranges"):  # sub-sequences have no folder of their own
        build_reader("uav123", root, split=None, config_key="data.init_args.test.root")
    reader = build_reader("uav123", root, split=None, options={"frame_ranges": ranges})
    assert reader.frame_path(1, 0).name == "000005.jpg"
    assert load_frame(reader, 1, 0)[0, 0, 0] == pytest.approx(frame_value(4), abs=2)
    assert len(reader.sequence_info(0)) == 4

    ranges = tmp_path / "ranges.yaml"  # a new file, not a cached index
    ranges.write_text(yaml.safe_dump({"bird1_1": {"folder": "bird1", "start": 1, "end": 4},
                                      "bird1_2": {"folder": "bird1", "start": 5, "end": 8}}))
    reader = build_reader("uav123", root, split=None, options={"frame_ranges": ranges})
    with pytest.raises(AnnotationError, match="covers 4 frames"):  # 3 annotation lines
        reader.sequence_info(1)
    ranges.write_text(yaml.safe_dump({"bird1_1": {"folder": "bird1", "start": 0}}))
    with pytest.raises(BadFileError, match="bird1_1"):
        build_reader("uav123", root, split=None, options={"frame_ranges": ranges})


# ------------------------------------------------------------------------------ resuming
def test_rerun_reuses_finished_sequences_with_the_same_scores(tmp_path: Path) -> None:
    write_synthtrack(tmp_path / "got10k", num_train=0, num_test=2, length=LENGTH, image_size=(64, 48),
                     layout="got10k")
    test = {"type": "got10k", "root": str(tmp_path / "got10k" / "val"), "split": None}
    first = CountingFirstBox(str(tmp_path / "results"))
    with warnings.catch_warnings(record=True) as fresh:
        warnings.simplefilter("always")
        scores = _evaluate(test, tmp_path / "results", first)["metrics"]
    assert len(first.initialized) == 2
    assert not [w for w in fresh if "not tracked" in str(w.message)]
    zip_path = tmp_path / "results" / "got10k_val" / f"{TRACKER}_got10k_submission.zip"
    zip_path.unlink()
    (tmp_path / "results" / "got10k_val" / TRACKER / "GOT-10k_Val_000001.txt").unlink()  # one to track again

    again = CountingFirstBox(str(tmp_path / "results"))
    with pytest.warns(UserWarning, match=r"1 of 2 sequences were not tracked: .*got10k_val/first_box"):
        assert _evaluate(test, tmp_path / "results", again)["metrics"] == scores
    assert len(again.initialized) == 1
    assert zip_path.is_file()  # exported again from the kept raw results (times included)


# ------------------------------------------------------------------------------ config fragments
FRAGMENTS = sorted((ROOT / "configs" / "benchmarks").glob("*.yaml"))


@pytest.mark.parametrize("fragment", FRAGMENTS, ids=[f.stem for f in FRAGMENTS])
def test_benchmark_fragment_sets_only_the_test_benchmark_it_is_named_after(fragment: Path) -> None:
    config = yaml.safe_load(fragment.read_text())
    assert list(config) == ["data"] and list(config["data"]) == ["init_args"]
    assert list(config["data"]["init_args"]) == ["test"]
    spec = EvalBenchmarkSpec(**config["data"]["init_args"]["test"])
    assert spec.max_sequences is None and spec.split_file is None  # reset what the experiment may have set
    assert spec.type in READER_TYPES
    key = benchmark_key(spec.type, spec.split, spec.root)
    assert key == fragment.stem and key in BENCHMARK_PROTOCOLS


def test_every_protocol_has_a_fragment() -> None:
    assert {f.stem for f in FRAGMENTS} == set(BENCHMARK_PROTOCOLS)


MIXFORMER_CONFIGS = sorted(p for p in (ROOT / "configs").glob("*.yaml") if "methods.mixformerv2." in p.read_text())
GOT10K_TEST_INTERVAL = {288: 10, 224: 15}  # official B / S test yamls, by search size (spec mixformerv2 §7)


@pytest.mark.parametrize("config", MIXFORMER_CONFIGS, ids=[p.stem for p in MIXFORMER_CONFIGS])
def test_mixformer_tracker_gets_its_got10k_test_interval_from_the_fragment(config: Path) -> None:
    """Parsed as `lightning test` parses the experiment + fragment (B: the code's intervals, S: its YAML's)."""
    from lightning_app.config_loading import parse_configs

    cfg = parse_configs([config, ROOT / "configs" / "benchmarks" / "got10k_test.yaml"])
    tracker, spec = cfg.model.init_args.tracker.as_dict(), cfg.data.init_args.test
    settings = MixFormerTrackerConfig(**{**tracker, "use_template_cache": False})
    built = settings.build(nn.Linear(1, 1), benchmark_key(spec.type, spec.split, spec.root))
    assert built.update_interval == GOT10K_TEST_INTERVAL[tracker["search_size"]]
