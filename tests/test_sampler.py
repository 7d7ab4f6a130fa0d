"""Pair sampling (causal, trident, positive/negative), redraws, reproducibility, DDP sharding (spec §2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datamodules.pair_dataset import EpochShardSampler, PairDataset, RawPair
from datamodules.readers.base import FrameReadError, ParsedSequence, SequenceFolderReader, SequenceInfo
from datamodules.sampler import (
    CausalPairSampler,
    PositiveNegativeSampler,
    TridentPairSampler,
    build_pair_sampler,
)
from trackers.errors import SampleRejected


class MemoryReader(SequenceFolderReader):
    """Sequences given by their visibility flags; frames are tiny arrays holding the frame id."""

    def __init__(self, visible: list[np.ndarray], name: str = "mem", broken: set[int] = frozenset(),
                 is_video: bool = True, valid: list[np.ndarray] | None = None) -> None:
        super().__init__(Path("/mem"), None, None, name, [f"{name}-{i}" for i in range(len(visible))])
        self._visible, self._valid, self.broken, self.is_video = visible, valid, broken, is_video

    def frame_path(self, i: int, frame_id: int) -> Path:
        return Path(f"/mem/{self.name}-{i}/{frame_id:08d}.jpg")

    def annotation_files(self, i: int) -> list[Path]:
        return []

    def parse_sequence(self, i: int) -> ParsedSequence:
        vis = np.asarray(self._visible[i], bool)
        valid = np.ones(len(vis), bool) if self._valid is None else np.asarray(self._valid[i], bool)
        boxes = np.tile([10.0, 10.0, 20.0, 20.0], (len(vis), 1))
        return ParsedSequence(SequenceInfo(boxes=boxes, valid=valid, visible=vis & valid))

    def open_frames(self, i: int, frame_ids) -> list[np.ndarray]:  # noqa: ANN001
        if i in self.broken:
            raise FrameReadError(f"cannot read frame '{self.frame_path(i, frame_ids[0])}' (corrupt image file)")
        return [np.full((40 + i, 80, 3), f % 256, np.uint8) for f in frame_ids]


def _flags(length: int, absent: slice | None = None) -> np.ndarray:
    vis = np.ones(length, bool)
    if absent is not None:
        vis[absent] = False
    return vis


def _ids(sample: dict) -> tuple[list[int], int]:
    pair = sample["pair"]
    return [int(f[0, 0, 0]) for f in pair.template_frames], int(pair.search_frames[0][0, 0, 0])


def _keep(pair: RawPair, rng: np.random.Generator) -> dict:
    return {"pair": pair}


def test_causal_order_gap_and_visibility() -> None:
    vis = [_flags(120, slice(30, 60)), _flags(80, slice(0, 40, 2))]
    reader = MemoryReader(vis)
    sampler = CausalPairSampler([reader], num_templates=3, max_gap=10)
    rng = np.random.default_rng(0)
    for _ in range(300):
        draw = sampler.draw(rng)
        flags = vis[draw.sequence]
        base = draw.template_ids[0]
        assert all(flags[i] for i in draw.template_ids + draw.search_ids)  # absent frames never chosen
        assert all(p < base for p in draw.template_ids[1:])  # index 0 is the latest template
        assert all(base < s for s in draw.search_ids)  # search strictly after the templates
        assert len(draw.template_ids) == 3 and len(draw.search_ids) == 1


def test_gap_without_retry_is_below_max_gap() -> None:
    sampler = CausalPairSampler([MemoryReader([_flags(500)])], max_gap=7)
    rng = np.random.default_rng(0)
    gaps = [d.search_ids[0] - d.template_ids[0] for d in (sampler.draw(rng) for _ in range(300))]
    assert min(gaps) >= 1 and max(gaps) <= 6  # search in (t, t + max_gap): the first try always succeeds here


def test_gap_grows_until_sparse_visible_frames_pair_up() -> None:
    # visible every 30 frames only: each try fails and widens the window by 5 until it reaches 30
    flags = np.zeros(121, bool)
    flags[::30] = True
    sampler = CausalPairSampler([MemoryReader([flags])], max_gap=5, min_length=20)
    rng = np.random.default_rng(0)
    gaps = {d.search_ids[0] - d.template_ids[0] for d in (sampler.draw(rng) for _ in range(50))}
    assert gaps == {30}


def test_unusable_sequences_and_ratios() -> None:
    short = MemoryReader([_flags(10), _flags(50)], name="a")  # the 10-frame sequence is never drawn
    never = MemoryReader([_flags(50)], name="b")
    with pytest.warns(UserWarning, match=r"a: 1 of 2 sequences are never drawn.*'a-0' \(10 frames, 10 visible\)"):
        sampler = CausalPairSampler([short, never], ratios=[1.0, 0.0])
    assert sampler.skipped == {"a": ["a-0"], "b": []}
    rng = np.random.default_rng(0)
    assert {(d.dataset, d.sequence) for d in (sampler.draw(rng) for _ in range(100))} == {(0, 1)}
    with pytest.raises(ValueError, match="'empty' has no sequence"), pytest.warns(UserWarning, match="never drawn"):
        CausalPairSampler([MemoryReader([_flags(50, slice(3, 50))], name="empty")])
    with pytest.raises(ValueError, match=r"ratios \[1.0, 2.0\]"):
        CausalPairSampler([short], ratios=[1.0, 2.0])


def _dataset(reader: MemoryReader, samples: int = 40, seed: int = 0) -> PairDataset:
    return PairDataset(CausalPairSampler([reader], max_gap=20), _keep, samples, seed=seed)


def test_same_key_same_sample_and_epochs_differ() -> None:
    ds = _dataset(MemoryReader([_flags(300)] * 4))
    assert _ids(ds[3]) == _ids(ds[3])
    epoch0 = [_ids(ds[k]) for k in range(40)]
    epoch1 = [_ids(ds[40 + k]) for k in range(40)]
    assert epoch0 != epoch1 and len(set(map(str, epoch0))) > 30


def test_exceptions_redraw_with_a_warning_naming_the_file() -> None:
    ds = _dataset(MemoryReader([_flags(60), _flags(60)], broken={0}))
    seen, redraws = [], []
    with pytest.warns(UserWarning, match=r"/mem/mem-0/\d{8}\.jpg"):
        for k in range(20):
            sample = ds[k]
            seen.append(sample["pair"].sequence)
            redraws.append(int(sample["redraws"]))
    assert set(seen) == {"mem-1"} and ds.redraws > 0
    assert sum(redraws) == ds.redraws  # each sample reports the redraws it took


def test_rejected_samples_redraw_then_give_up() -> None:
    calls = {"n": 0}

    def reject_twice(pair: RawPair, rng: np.random.Generator) -> dict:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise SampleRejected("crop all padding")
        return {"pair": pair}

    ds = PairDataset(CausalPairSampler([MemoryReader([_flags(60)])]), reject_twice, 10, max_redraws=5)
    assert int(ds[0]["redraws"]) == 2 and ds.redraws == 2
    ds_never = PairDataset(CausalPairSampler([MemoryReader([_flags(60)])]),
                           lambda p, r: (_ for _ in ()).throw(SampleRejected("no")), 10, max_redraws=3)
    with pytest.raises(RuntimeError, match="no valid sample after 3 draws"):
        ds_never[0]


def test_ranks_draw_disjoint_keys_and_different_samples() -> None:
    n, world = 103, 2
    shards = [EpochShardSampler(n, num_replicas=world, rank=r) for r in range(world)]
    for s in shards:
        s.set_epoch(2)
    keys = [list(s) for s in shards]
    assert len(keys[0]) == len(keys[1]) == len(shards[0]) == n // world
    assert not set(keys[0]) & set(keys[1])
    assert set(keys[0]) | set(keys[1]) == set(range(2 * n, 2 * n + (n // world) * world))
    ds = _dataset(MemoryReader([_flags(400)] * 8), samples=n)
    samples = [[_ids(ds[k]) for k in ks[:20]] for ks in keys]
    assert samples[0] != samples[1]


def test_fixed_epoch_ignores_set_epoch() -> None:
    shard = EpochShardSampler(10, fixed_epoch=0)
    shard.set_epoch(5)
    assert list(shard) == list(range(10))
    moving = EpochShardSampler(10)
    moving.set_epoch(5)
    assert list(moving) == list(range(50, 60))


def test_two_templates_causal_as_mixformerv2() -> None:
    vis = [_flags(300, slice(100, 140))]
    sampler = build_pair_sampler("causal", [MemoryReader(vis)], None, num_templates=2, max_gap=30)
    assert isinstance(sampler, CausalPairSampler)
    rng = np.random.default_rng(1)
    for _ in range(300):
        draw = sampler.draw(rng)
        latest, earlier = draw.template_ids
        (search,) = draw.search_ids
        assert all(vis[0][i] for i in (latest, earlier, search))
        assert latest - 30 - 5 * 200 <= earlier < latest < search  # earlier template, then the search frame
        assert draw.positive and draw.search_source is None


def test_image_datasets_reuse_their_frame_and_skip_visibility() -> None:
    images = MemoryReader([np.zeros(1, bool)] * 3, name="coco", is_video=False)  # not visible: still drawn
    sampler = CausalPairSampler([images], num_templates=2)
    draws = [sampler.draw(np.random.default_rng(s)) for s in range(20)]
    assert {d.template_ids + d.search_ids for d in draws} == {(0, 0, 0)}
    assert len({d.sequence for d in draws}) == 3


@pytest.mark.parametrize("mode", ["trident", "trident_pro", "stark"])
def test_trident_modes_place_the_dynamic_template_near_the_search(mode: str) -> None:
    vis = _flags(400, slice(150, 260))
    valid = _flags(400, slice(200, 230))
    sampler = TridentPairSampler([MemoryReader([vis], valid=[valid])], mode=mode, max_gaps=(40,))
    assert sampler.num_templates == 2
    rng = np.random.default_rng(0)
    extras_hidden = 0
    for _ in range(400):
        draw = sampler.draw(rng)
        first, extra = draw.template_ids
        (search,) = draw.search_ids
        assert vis[first] and vis[search]  # template 1 and search are always visible
        if first >= search:
            assert search <= extra < search + 40
        else:
            assert search - 40 <= extra < search
        extras_hidden += not vis[extra]
        if mode == "trident":
            assert vis[extra]
        if mode == "stark":
            assert valid[extra]
    assert (extras_hidden > 0) == (mode in ("trident_pro", "stark"))  # only trident insists on visible


def _negative_sampler(positive_prob: float, readers: list[MemoryReader]) -> PositiveNegativeSampler:
    sampler = build_pair_sampler("trident_pro", readers, None, num_templates=2, max_gap=50,
                                 positive_prob=positive_prob)
    assert isinstance(sampler, PositiveNegativeSampler)
    return sampler


def test_negatives_use_hidden_frames_with_a_centred_box() -> None:
    vis = _flags(200, slice(60, 90))
    sampler = _negative_sampler(0.5, [MemoryReader([vis])])
    draws = [sampler.draw(np.random.default_rng(s)) for s in range(400)]
    negatives = [d for d in draws if not d.positive]
    assert 0.4 < len(negatives) / len(draws) < 0.6
    assert all(not vis[d.search_ids[0]] and d.centre_search_box for d in negatives)
    assert all(vis[d.search_ids[0]] and not d.centre_search_box for d in draws if d.positive)
    ds = PairDataset(sampler, _keep, 50)
    key = next(k for k in range(50) if not ds.sampler.draw(ds.rng_for(k)).positive)
    pair = ds[key]["pair"]
    assert not pair.search_visible
    np.testing.assert_array_equal(pair.search_boxes, [[35.0, 17.0, 10.0, 5.0]])  # (80, 40) frame: centred W/8 x H/8


def test_negatives_without_hidden_frames_come_from_other_sequences() -> None:
    videos = MemoryReader([_flags(100)] * 2, name="v")  # always visible: no hidden frame to use
    images = MemoryReader([np.ones(1, bool)] * 2, name="img", is_video=False)
    sampler = _negative_sampler(0.0, [videos, images])
    draws = [sampler.draw(np.random.default_rng(s)) for s in range(200)]
    assert not any(d.positive or d.centre_search_box for d in draws)
    assert all(d.search_source is not None for d in draws)
    assert {d.search_source[0] for d in draws} == {0, 1}  # a random dataset...
    assert all(d.search_ids == (0,) for d in draws if d.search_source[0] == 1)  # ...and its own frame/box
    ds = PairDataset(sampler, _keep, 8)
    pair = ds[0]["pair"]
    assert not pair.search_visible and pair.search_boxes.shape == (1, 4)


def test_bad_sampler_settings_are_named() -> None:
    with pytest.raises(ValueError, match="sampler_mode 'random'"):
        build_pair_sampler("random", [MemoryReader([_flags(50)])], None, 1, 200)
    with pytest.raises(ValueError, match="positive_prob"):
        build_pair_sampler("causal", [MemoryReader([_flags(50)])], None, 1, 200, positive_prob=1.5)
