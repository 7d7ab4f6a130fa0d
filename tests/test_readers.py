"""Dataset readers on tiny copies of each official layout (spec tracking_ecosystem §1, §7)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datamodules.readers import (
    READER_TYPES,
    CocoReader,
    DatasetRootError,
    Got10kReader,
    TrackingNetReader,
    build_reader,
)
from tests.tiny_datasets import (
    frame_box,
    frame_value,
    load_frame,
    make_coco,
    make_got10k,
    make_lasot,
    make_trackingnet,
)
from trackers.errors import BadFileError


@pytest.fixture
def specs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private data_specs folder with tiny GOT-10k index files and a TrackingNet class map."""
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "got10k_vot_train_split.txt").write_text("2\n0\n")
    (specs / "got10k_vot_val_split.txt").write_text("1\n")
    (specs / "got10k_train_full_split.txt").write_text("0\n1\n2\n3\n")
    (specs / "got10k_train_split.txt").write_text("7\n")  # beyond list.txt
    (specs / "trackingnet_classmap.txt").write_text("aaa_0\tperson\nbbb_1\tboat\n")
    monkeypatch.setenv("DISTILTRACK_DATA_SPECS", str(specs))
    return specs


def _frame_level(reader, i: int, frame_id: int) -> int:  # noqa: ANN001 - a SequenceReader
    return int(round(float(load_frame(reader, i, frame_id).mean())))


def test_registry_knows_every_dataset_type() -> None:
    assert set(READER_TYPES) == {"lasot", "synthtrack", "got10k", "trackingnet", "coco", "lasot_extension", "uav123"}


def test_lasot_frames_boxes_and_flags(tmp_path: Path) -> None:
    root = make_lasot(tmp_path / "lasot", {"cat-2": 6, "dog-1": 4}, occluded={"cat-2": [3]})
    split = tmp_path / "split.txt"
    split.write_text("cat-2\n")
    reader = build_reader("lasot", root, split=None, split_file=split)
    assert reader.num_sequences == 1 and reader.sequence_class(0) == "cat"
    info = reader.sequence_info(0)
    np.testing.assert_array_equal(info.boxes, [frame_box(k) for k in range(6)])
    np.testing.assert_array_equal(info.visible, [True, True, True, False, True, True])
    assert reader.frame_path(0, 0).name == "00000001.jpg" and _frame_level(reader, 0, 4) == frame_value(4)
    assert build_reader("lasot", root, split=None).num_sequences == 2  # no split: every sequence folder


def test_got10k_index_files_map_positions_in_list_txt(tmp_path: Path, specs_dir: Path) -> None:
    names = ["GOT-10k_Train_000004", "GOT-10k_Train_000001", "GOT-10k_Train_000003", "GOT-10k_Train_000002"]
    train = make_got10k(tmp_path / "got10k" / "train", {n: 5 for n in names})  # list.txt deliberately unsorted
    assert [Got10kReader(train, split="vottrain").sequence_name(i) for i in range(2)] == [names[2], names[0]]
    assert [Got10kReader(train, split="votval").sequence_name(0)] == [names[1]]
    assert Got10kReader(train, split="train_full").names == names
    assert Got10kReader(train, split=None).names == names  # no split: list.txt as it is
    by_name = tmp_path / "names.txt"
    by_name.write_text(f"{names[3]}\n{names[1]}\n")
    assert Got10kReader(train, split="vottrain", split_file=by_name).names == [names[3], names[1]]  # split_file wins
    with pytest.raises(BadFileError, match=r"index 7 in .*got10k_train_split\.txt.*4 entries of .*list\.txt"):
        Got10kReader(train, split="train")
    with pytest.raises(ValueError, match=r"unknown GOT-10k split 'votrain' at data\.init_args\.datasets\[0\]\.split"):
        Got10kReader(train, split="votrain")


def test_got10k_visibility_class_and_frame_files(tmp_path: Path, specs_dir: Path) -> None:
    name = "GOT-10k_Val_000001"
    val = make_got10k(tmp_path / "val", {name: 8}, absent={name: [2]}, uncovered={name: [4]}, zero_box={name: [6]},
                      classes={name: "zebra"})
    reader = build_reader("got10k", val, split=None)
    info = reader.sequence_info(0)
    assert len(info) == 8 and reader.sequence_class(0) == "zebra"
    np.testing.assert_array_equal(info.visible, [k not in (2, 4, 6) for k in range(8)])  # absent, cover 0, w=0
    np.testing.assert_array_equal(info.valid, [k != 6 for k in range(8)])
    np.testing.assert_array_equal(info.boxes[3], frame_box(3))
    assert reader.frame_path(0, 2).name == "00000003.jpg" and _frame_level(reader, 0, 2) == frame_value(2)


def test_got10k_test_folder_has_only_the_first_box(tmp_path: Path) -> None:
    test = make_got10k(tmp_path / "test", {"GOT-10k_Test_000001": 5}, first_box_only=True)
    info = build_reader("got10k", test, split=None).sequence_info(0)
    assert len(info) == 5  # frame count from the images, not from the 1-line groundtruth
    np.testing.assert_array_equal(info.boxes[0], frame_box(0))
    assert np.isnan(info.boxes[1:]).all() and info.visible.tolist() == [True, False, False, False, False]


def test_got10k_root_errors_name_the_config_key(tmp_path: Path) -> None:
    got = make_got10k(tmp_path / "got10k" / "train", {"GOT-10k_Train_000001": 3})
    with pytest.raises(DatasetRootError, match=r"has no list\.txt: set data\.init_args\.datasets\[1\]\.root"):
        build_reader("got10k", got.parent, split=None, config_key="data.init_args.datasets[1].root")
    (got / "list.txt").write_text("GOT-10k_Train_000001\nGOT-10k_Train_000009\n")
    with pytest.raises(DatasetRootError, match="GOT-10k_Train_000009"):
        build_reader("got10k", got, split=None)


def test_trackingnet_chunks_frames_and_classes(tmp_path: Path, specs_dir: Path) -> None:
    root = make_trackingnet(tmp_path / "tn", {"TRAIN_0": {"bbb_1": 4, "aaa_0": 12}, "TRAIN_1": {"ccc_2": 3},
                                              "TEST": {"ttt_0": 6}})
    every = build_reader("trackingnet", root, split=None)
    assert every.names == ["aaa_0", "bbb_1", "ccc_2"]  # all TRAIN chunks present, names sorted per chunk
    assert [every.sequence_class(i) for i in range(3)] == ["person", "boat", "Unknown"]
    assert build_reader("trackingnet", root, split="1").names == ["ccc_2"]
    assert build_reader("trackingnet", root, split="0, 1").names == ["aaa_0", "bbb_1", "ccc_2"]
    info = every.sequence_info(0)
    np.testing.assert_array_equal(info.boxes, [frame_box(k) for k in range(12)])
    assert info.visible.all()
    assert every.frame_path(0, 10).name == "10.jpg" and _frame_level(every, 0, 10) == frame_value(10)  # not padded
    test = build_reader("trackingnet", root, split="TEST").sequence_info(0)
    assert len(test) == 6 and np.isnan(test.boxes[1:]).all()
    with pytest.raises(ValueError, match=r"bad TrackingNet split '12' at data\.init_args\.datasets\[0\]\.split"):
        build_reader("trackingnet", root, split="12")
    with pytest.raises(DatasetRootError, match=r"TRAIN_5"):
        build_reader("trackingnet", root, split="0,5")


@pytest.mark.parametrize("style", ["images", "flat"])
def test_coco_instances_are_one_frame_sequences(tmp_path: Path, style: str) -> None:
    root = make_coco(tmp_path / "coco", image_dir_style=style)
    reader = build_reader("coco", root, split="train2017")
    assert isinstance(reader, CocoReader) and not reader.is_video
    assert [reader.sequence_name(i) for i in range(reader.num_sequences)] == ["101", "102", "104", "105"]  # no crowd
    assert [reader.sequence_class(i) for i in range(4)] == ["person", "kite", "kite", "person"]
    info = reader.sequence_info(2)
    np.testing.assert_array_equal(info.boxes, [[20.5, 30.25, 70.0, 60.0]])
    assert reader.frame_path(2, 0).name == "000000000003.jpg" and _frame_level(reader, 2, 0) == frame_value(1)
    # OSTrack/MixFormerV2 threshold: w > 50 and h > 50 (annotation 102 is 30 px wide)
    assert [bool(reader.sequence_info(i).valid[0]) for i in range(4)] == [True, False, True, True]
    loose = build_reader("coco", root, split="train2017", options={"min_size": 0})
    assert all(loose.sequence_info(i).valid[0] for i in range(4))


def test_coco_errors_name_files_and_keys(tmp_path: Path) -> None:
    root = make_coco(tmp_path / "coco")
    with pytest.raises(DatasetRootError, match=r"instances_val2017\.json.*datasets\[2\]\.split"):
        build_reader("coco", root, split="val2017", config_key="data.init_args.datasets[2].root")
    with pytest.raises(ValueError, match=r"unknown coco options \['min_sz'\] at data\.init_args\.datasets\[0\]"):
        build_reader("coco", root, split="train2017", options={"min_sz": 10})
    (root / "annotations" / "instances_train2017.json").write_text("{not json")
    with pytest.raises(BadFileError, match=r"instances_train2017\.json' is not a valid instances file"):
        build_reader("coco", root, split="train2017").num_sequences


def test_readers_without_options_reject_them(tmp_path: Path) -> None:
    root = make_lasot(tmp_path / "lasot", {"cat-1": 3})
    with pytest.raises(ValueError, match="lasot options \\['min_size'\\].*takes none"):
        build_reader("lasot", root, split=None, options={"min_size": 1})
    assert isinstance(build_reader("trackingnet", make_trackingnet(tmp_path / "tn", {"TRAIN_3": {"x_0": 2}}), None),
                      TrackingNetReader)


def test_sampled_got10k_frames_are_always_visible(tmp_path: Path) -> None:
    from datamodules.sampler import CausalPairSampler, TridentPairSampler

    hidden = {"GOT-10k_Train_000001": [k for k in range(40) if k % 3 == 0]}
    root = make_got10k(tmp_path / "train", {"GOT-10k_Train_000001": 40}, absent=hidden,
                       uncovered={"GOT-10k_Train_000001": [5, 7, 11]})
    never = set(hidden["GOT-10k_Train_000001"]) | {5, 7, 11}
    rng = np.random.default_rng(0)
    for sampler in (CausalPairSampler([build_reader("got10k", root, None)], num_templates=2),
                    TridentPairSampler([build_reader("got10k", root, None)], mode="trident")):
        for _ in range(200):
            draw = sampler.draw(rng)
            assert not never & set(draw.template_ids + draw.search_ids)
