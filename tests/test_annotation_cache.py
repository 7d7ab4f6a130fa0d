"""Annotation cache: parsed once per dataset root and split, reused, rebuilt when stale."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from datamodules.readers import CocoReader, Got10kReader, build_reader
from datamodules.readers.annotation_cache import cache_path
from tests.tiny_datasets import frame_box, make_coco, make_got10k

NAMES = ["GOT-10k_Train_000001", "GOT-10k_Train_000002", "GOT-10k_Train_000003"]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("DISTILTRACK_CACHE", str(folder))
    return folder


@pytest.fixture
def got(tmp_path: Path) -> Path:
    return make_got10k(tmp_path / "got10k" / "train", {n: 6 for n in NAMES})


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the sequences parsed from their files (the cache must make this list stay empty)."""
    seen: list[str] = []
    original = Got10kReader.parse_sequence

    def counting(self, i: int):  # noqa: ANN001, ANN202
        seen.append(self.names[i])
        return original(self, i)

    monkeypatch.setattr(Got10kReader, "parse_sequence", counting)
    return seen


def _touch_later(path: Path) -> None:
    later = time.time_ns() + 5_000_000_000
    os.utime(path, ns=(later, later))


def test_second_reader_loads_the_cache_without_parsing(cache: Path, got: Path, parses: list[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    first = build_reader("got10k", got, split=None)
    first.preload()
    assert parses == NAMES
    path = cache_path(first)
    assert path is not None and path.is_file() and path.parent.parent == cache  # never inside the dataset root
    assert not list(got.rglob("*.npz"))

    def fail(self, i: int):  # noqa: ANN001, ANN202
        raise AssertionError("parsed again although the cache is fresh")

    monkeypatch.setattr(Got10kReader, "parse_sequence", fail)
    second = build_reader("got10k", got, split=None)
    for i in range(len(NAMES)):
        np.testing.assert_array_equal(second.sequence_info(i).boxes, first.sequence_info(i).boxes)
        np.testing.assert_array_equal(second.sequence_info(i).visible, first.sequence_info(i).visible)
        assert second.sequence_class(i) == "ball"


def test_a_changed_annotation_file_rebuilds_the_cache(cache: Path, got: Path, parses: list[str]) -> None:
    build_reader("got10k", got, split=None).preload()
    gt = got / NAMES[1] / "groundtruth.txt"
    lines = gt.read_text().splitlines()
    lines[0] = "1,2,30,40"
    gt.write_text("\n".join(lines) + "\n")
    _touch_later(gt)
    parses.clear()
    reader = build_reader("got10k", got, split=None)
    np.testing.assert_array_equal(reader.sequence_info(1).boxes[0], [1, 2, 30, 40])
    np.testing.assert_array_equal(reader.sequence_info(1).boxes[1], frame_box(1))
    assert parses == NAMES


def test_new_reader_version_or_split_gets_its_own_cache(cache: Path, got: Path, parses: list[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    reader = build_reader("got10k", got, split=None)
    reader.preload()
    old_path = cache_path(reader)
    parses.clear()
    monkeypatch.setattr(Got10kReader, "annotation_version", Got10kReader.annotation_version + 1)
    bumped = build_reader("got10k", got, split=None)
    bumped.preload()
    assert parses == NAMES and cache_path(bumped) != old_path
    split = got.parent / "two.txt"
    split.write_text(f"{NAMES[2]}\n{NAMES[0]}\n")
    parses.clear()
    assert build_reader("got10k", got, split=None, split_file=split).preload().names.tolist() == [NAMES[2], NAMES[0]]
    assert parses == [NAMES[2], NAMES[0]]


def test_a_removed_sequence_file_invalidates(cache: Path, got: Path, parses: list[str]) -> None:
    build_reader("got10k", got, split=None).preload()
    (got / NAMES[0] / "cover.label").unlink()  # fewer source files: stale even without a newer mtime
    parses.clear()
    build_reader("got10k", got, split=None).preload()
    assert parses == NAMES


def test_cache_can_be_disabled_and_survives_an_unwritable_folder(tmp_path: Path, got: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTILTRACK_CACHE", "off")
    reader = build_reader("got10k", got, split=None)
    assert cache_path(reader) is None and len(reader.preload()) == 3
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("DISTILTRACK_CACHE", str(blocker / "cache"))
    with pytest.warns(UserWarning, match="cannot write the annotation cache.*DISTILTRACK_CACHE"):
        assert len(build_reader("got10k", got, split=None).preload()) == 3


def test_coco_json_is_parsed_once(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_coco(tmp_path / "coco")
    first = build_reader("coco", root, split="train2017")
    assert first.num_sequences == 4
    monkeypatch.setattr(CocoReader, "build_index", lambda self: pytest.fail("COCO JSON parsed again"))
    second = build_reader("coco", root, split="train2017")
    assert second.num_sequences == 4 and second.frame_path(3, 0) == first.frame_path(3, 0)
    monkeypatch.undo()
    monkeypatch.setenv("DISTILTRACK_CACHE", str(cache))
    strict, loose = (build_reader("coco", root, split="train2017", options={"min_size": m}) for m in (50, 0))
    assert cache_path(strict) != cache_path(loose)  # the threshold changes the index: its own cache
    assert not strict.sequence_info(1).valid[0] and loose.sequence_info(1).valid[0]
