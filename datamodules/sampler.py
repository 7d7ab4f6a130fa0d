"""Training pair sampling (spec tracking_ecosystem §2.1, §2.2, §2.7).

Three pieces, each replaceable on its own:

* ``CausalPairSampler`` draws (dataset, sequence, template ids, search ids) from cached annotations;
  it knows nothing about images or crops (a positive/negative mode, §2.6, can wrap it later).
* ``PairDataset`` turns a global sample key into a sample: it seeds a numpy Generator from
  ``(seed, stream, epoch, index)``, draws, loads the frames and hands them to a ``process``
  callable; a rejected sample or any exception redraws (counted; exceptions warn with the file).
* ``EpochShardSampler`` hands each DDP rank a disjoint share of the epoch's global sample keys.

Because a sample depends only on its global key, a run is reproducible whatever the number of
workers, and two ranks never draw the same sample.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from torch.utils.data import Dataset, DistributedSampler

from datamodules.readers.base import SequenceReader


class SampleRejected(Exception):
    """Raised by the sampler or the processing when a draw cannot be used; the sample is redrawn silently."""


@dataclass(frozen=True)
class PairDraw:
    """Frame ids of one training sample; ``template_ids[0]`` is the latest template."""

    dataset: int
    sequence: int
    template_ids: tuple[int, ...]
    search_ids: tuple[int, ...]


@dataclass
class RawPair:
    """Decoded frames and frame xywh boxes of one draw, before any processing."""

    template_frames: list[np.ndarray]
    template_boxes: np.ndarray  # (T, 4)
    search_frames: list[np.ndarray]
    search_boxes: np.ndarray  # (N, 4)
    dataset: str
    sequence: str


class CausalPairSampler:
    """The ``causal`` sampler: templates then search frames at most ``max_gap - 1 + g`` frames later.

    Annotations are read once at construction (``reader.preload``); sequences that cannot give a
    sample (fewer than ``2 * (n_t + n_s)`` visible frames or shorter than ``min_length``) are
    excluded up front, which is the same distribution as the upstream reject-and-redraw loop.
    """

    def __init__(
        self,
        readers: Sequence[SequenceReader],
        ratios: Sequence[float] | None = None,
        num_templates: int = 1,
        num_search: int = 1,
        max_gap: int = 200,
        min_length: int = 20,
        gap_increase: int = 5,
        max_gap_retries: int = 1000,
    ) -> None:
        if not readers:
            raise ValueError("CausalPairSampler needs at least one dataset reader")
        if num_templates < 1 or num_search < 1:
            raise ValueError(f"need >= 1 template and search frame (got {num_templates}, {num_search})")
        weights = np.array(ratios if ratios is not None else [r.num_sequences for r in readers], dtype=np.float64)
        if weights.shape != (len(readers),) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"dataset ratios {list(weights)} must be one non-negative number per dataset, not all 0")
        self.readers = list(readers)
        self.probabilities = weights / weights.sum()
        self.num_templates, self.num_search = num_templates, num_search
        self.max_gap, self.gap_increase, self.max_gap_retries = max_gap, gap_increase, max_gap_retries
        self._visible: list[list[np.ndarray]] = []
        self._lengths: list[np.ndarray] = []
        self._usable: list[np.ndarray] = []
        for reader in self.readers:
            infos = reader.preload()
            visible = [np.flatnonzero(info.visible).astype(np.int32) for info in infos]
            lengths = np.array([len(info) for info in infos], dtype=np.int64)
            counts = np.array([len(v) for v in visible], dtype=np.int64)
            if reader.is_video:
                usable = np.flatnonzero((counts > 2 * (num_search + num_templates)) & (lengths >= min_length))
            else:
                usable = np.arange(len(infos))
            if usable.size == 0:
                raise ValueError(
                    f"dataset '{reader.name}' has no sequence with >= {min_length} frames and more than "
                    f"{2 * (num_search + num_templates)} visible frames: check its root and split"
                )
            self._visible.append(visible)
            self._lengths.append(lengths)
            self._usable.append(usable)

    def draw(self, rng: np.random.Generator) -> PairDraw:
        d = int(rng.choice(len(self.readers), p=self.probabilities))
        seq = int(self._usable[d][rng.integers(len(self._usable[d]))])
        if not self.readers[d].is_video:
            return PairDraw(d, seq, (0,) * self.num_templates, (0,) * self.num_search)
        visible, length = self._visible[d][seq], int(self._lengths[d][seq])
        n_t, n_s, gap = self.num_templates, self.num_search, 0
        for _ in range(self.max_gap_retries):
            base = _pick(visible, 1, n_t - 1, length - n_s, length, rng)
            if base is None:
                raise SampleRejected("no visible frame can serve as the latest template")
            b = int(base[0])
            prev = _pick(visible, n_t - 1, b - self.max_gap - gap, b, length, rng) if n_t > 1 else np.empty(0, int)
            if prev is None:
                gap += self.gap_increase
                continue
            search = _pick(visible, n_s, b + 1, b + self.max_gap + gap, length, rng)
            gap += self.gap_increase
            if search is not None:
                return PairDraw(d, seq, (b, *map(int, prev)), tuple(map(int, search)))
        raise SampleRejected(f"no causal frame pair found in {self.max_gap_retries} tries")


def _pick(visible: np.ndarray, k: int, lo: int, hi: int, length: int, rng: np.random.Generator) -> np.ndarray | None:
    """``k`` draws with replacement among the visible frames in ``[max(lo, 0), min(hi, length))``, or None."""
    a = int(np.searchsorted(visible, max(lo, 0), side="left"))
    b = int(np.searchsorted(visible, min(hi, length), side="left"))
    if b <= a:
        return None
    return visible[rng.integers(a, b, size=k)]


class PairDataset(Dataset):
    """Map-style dataset of ``samples_per_epoch`` random samples keyed by ``epoch * samples_per_epoch + index``.

    ``stream`` separates independent sample streams with the same seed (e.g. train 0, val 1).
    """

    def __init__(
        self,
        sampler: CausalPairSampler,
        process: Callable[[RawPair, np.random.Generator], dict],
        samples_per_epoch: int,
        seed: int = 0,
        stream: int = 0,
        max_redraws: int = 100,
    ) -> None:
        if samples_per_epoch < 1:
            raise ValueError(f"samples_per_epoch must be >= 1 (got {samples_per_epoch})")
        self.sampler = sampler
        self.process = process
        self.samples_per_epoch = samples_per_epoch
        self.seed, self.stream, self.max_redraws = seed, stream, max_redraws
        self.redraws = 0  # per process (each DataLoader worker counts its own)

    def __len__(self) -> int:
        return self.samples_per_epoch

    def rng_for(self, key: int) -> np.random.Generator:
        epoch, index = divmod(int(key), self.samples_per_epoch)
        return np.random.default_rng([self.seed, self.stream, epoch, index])

    def __getitem__(self, key: int) -> dict:
        rng = self.rng_for(key)
        last_error: Exception | None = None
        for _ in range(self.max_redraws):
            draw: PairDraw | None = None
            try:
                draw = self.sampler.draw(rng)
                return self.process(self.load(draw), rng)
            except SampleRejected as exc:
                last_error = exc
            except Exception as exc:  # corrupt image, bad annotation...: redraw, but say which file
                last_error = exc
                reader = self.sampler.readers[draw.dataset] if draw is not None else None
                where = f"{reader.name} '{reader.sequence_name(draw.sequence)}'" if reader is not None else "draw"
                warnings.warn(f"sample {key}: redrawing after {type(exc).__name__} in {where}: {exc}", stacklevel=2)
            self.redraws += 1
        raise RuntimeError(f"sample {key}: no valid sample after {self.max_redraws} draws; last error: {last_error}")

    def load(self, draw: PairDraw) -> RawPair:
        reader = self.sampler.readers[draw.dataset]
        info = reader.sequence_info(draw.sequence)
        frames = reader.load_frames(draw.sequence, draw.template_ids + draw.search_ids)
        n_t = len(draw.template_ids)
        return RawPair(
            template_frames=frames[:n_t],
            template_boxes=info.boxes[list(draw.template_ids)],
            search_frames=frames[n_t:],
            search_boxes=info.boxes[list(draw.search_ids)],
            dataset=reader.name,
            sequence=reader.sequence_name(draw.sequence),
        )


class EpochShardSampler(DistributedSampler):
    """This rank's share of an epoch's global sample keys: ``epoch * N + i`` for ``i = rank, rank + world, ...``.

    ``N`` is the global ``samples_per_epoch``; the tail that does not divide evenly is dropped
    (upstream ``drop_last``). A ``fixed_epoch`` ignores ``set_epoch`` (the same validation samples
    every time). Being a ``DistributedSampler``, Lightning uses it as is instead of wrapping it.
    """

    def __init__(self, samples_per_epoch: int, num_replicas: int = 1, rank: int = 0,
                 fixed_epoch: int | None = None) -> None:
        super().__init__(range(samples_per_epoch), num_replicas=num_replicas, rank=rank, shuffle=False,
                         drop_last=True)
        self.samples_per_epoch = samples_per_epoch
        self.fixed_epoch = fixed_epoch
        if fixed_epoch is not None:
            self.epoch = fixed_epoch

    def set_epoch(self, epoch: int) -> None:
        if self.fixed_epoch is None:
            self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        start = self.epoch * self.samples_per_epoch
        return iter(range(start + self.rank, start + self.num_samples * self.num_replicas, self.num_replicas))

    def __len__(self) -> int:
        return self.num_samples
