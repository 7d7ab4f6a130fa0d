"""Causal pair sampling, redraws, reproducibility and DDP sharding (spec tracking_ecosystem §2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datamodules.readers.base import FrameReadError, SequenceInfo, SequenceReader
from datamodules.sampler import CausalPairSampler, EpochShardSampler, PairDataset, RawPair, SampleRejected


class MemoryReader(SequenceReader):
    """Sequences given by their visibility flags; frames are tiny arrays holding the frame id."""

    def __init__(self, visible: list[np.ndarray], name: str = "mem", broken: set[int] = frozenset()) -> None:
        super().__init__()
        self.name, self._visible, self.broken = name, visible, broken

    @property
    def num_sequences(self) -> int:
        return len(self._visible)

    def sequence_name(self, i: int) -> str:
        return f"{self.name}-{i}"

    def frame_path(self, i: int, frame_id: int) -> Path:
        return Path(f"/mem/{self.name}-{i}/{frame_id:08d}.jpg")

    def _read_sequence_info(self, i: int) -> SequenceInfo:
        vis = np.asarray(self._visible[i], bool)
        boxes = np.tile([10.0, 10.0, 20.0, 20.0], (len(vis), 1))
        return SequenceInfo(boxes=boxes, valid=np.ones(len(vis), bool), visible=vis)

    def load_frames(self, i: int, frame_ids) -> list[np.ndarray]:  # noqa: ANN001
        if i in self.broken:
            raise FrameReadError(f"cannot read frame '{self.frame_path(i, frame_ids[0])}' (corrupt image file)")
        return [np.full((4, 4, 3), f % 256, np.uint8) for f in frame_ids]


def _flags(length: int, absent: slice | None = None) -> np.ndarray:
    vis = np.ones(length, bool)
    if absent is not None:
        vis[absent] = False
    return vis


def _ids(pair: RawPair) -> tuple[list[int], int]:
    return [int(f[0, 0, 0]) for f in pair.template_frames], int(pair.search_frames[0][0, 0, 0])


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
    sampler = CausalPairSampler([short, never], ratios=[1.0, 0.0])
    rng = np.random.default_rng(0)
    assert {(d.dataset, d.sequence) for d in (sampler.draw(rng) for _ in range(100))} == {(0, 1)}
    with pytest.raises(ValueError, match="'empty' has no sequence"):
        CausalPairSampler([MemoryReader([_flags(50, slice(3, 50))], name="empty")])
    with pytest.raises(ValueError, match="ratios"):
        CausalPairSampler([short], ratios=[1.0, 2.0])


def _dataset(reader: MemoryReader, samples: int = 40, seed: int = 0) -> PairDataset:
    return PairDataset(CausalPairSampler([reader], max_gap=20), lambda pair, rng: pair, samples, seed=seed)


def test_same_key_same_sample_and_epochs_differ() -> None:
    ds = _dataset(MemoryReader([_flags(300)] * 4))
    assert _ids(ds[3]) == _ids(ds[3])
    epoch0 = [_ids(ds[k]) for k in range(40)]
    epoch1 = [_ids(ds[40 + k]) for k in range(40)]
    assert epoch0 != epoch1 and len(set(map(str, epoch0))) > 30


def test_exceptions_redraw_with_a_warning_naming_the_file() -> None:
    ds = _dataset(MemoryReader([_flags(60), _flags(60)], broken={0}))
    seen = []
    with pytest.warns(UserWarning, match=r"/mem/mem-0/\d{8}\.jpg"):
        for k in range(20):
            seen.append(ds[k].sequence)
    assert set(seen) == {"mem-1"} and ds.redraws > 0


def test_rejected_samples_redraw_then_give_up() -> None:
    calls = {"n": 0}

    def reject_twice(pair: RawPair, rng: np.random.Generator) -> RawPair:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise SampleRejected("crop all padding")
        return pair

    ds = PairDataset(CausalPairSampler([MemoryReader([_flags(60)])]), reject_twice, 10, max_redraws=5)
    ds[0]
    assert ds.redraws == 2
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
