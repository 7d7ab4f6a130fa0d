"""Training frame selection (spec tracking_ecosystem §2.1-2.6): which frames make one sample.

Samplers only choose (dataset, sequence, template ids, search ids) from the readers' annotation
indexes; they know nothing about images or crops.

* ``PairSampler`` (base): §2.1 dataset choice by ratio and sequence choice among the usable ones.
* ``CausalPairSampler``: §2.2, templates then search frames at most ``max_gap - 1 + g`` later.
* ``TridentPairSampler``: §2.4 ``trident`` / ``trident_pro`` / ``stark``, a random first template
  plus one dynamic template per gap near the search frame (MixFormerV2's score stage).
* ``PositiveNegativeSampler``: §2.6, wraps either; a share of samples gets a search frame that does
  not show the target (``positive=False``), for score-head training.

Image datasets (COCO) are always accepted and use their one frame for every template and search.
Sequences that cannot give a sample are excluded up front (the same distribution as the upstream
reject-and-redraw loop) and reported once, naming their annotation file.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from collections.abc import Sequence

import numpy as np

from datamodules.readers.base import AnnotationIndex, SequenceReader
from trackers.errors import SampleRejected

SAMPLER_MODES = ("causal", "trident", "trident_pro", "stark")
MAX_LISTED_SEQUENCES = 3


@dataclass(frozen=True)
class PairDraw:
    """Frame ids of one training sample; ``template_ids[0]`` is the latest template (causal) or the first (trident).

    ``search_source`` (dataset, sequence) is set when the search frames come from another sequence
    (a negative); ``centre_search_box`` replaces the search box by a centred (W/8, H/8) box.
    """

    dataset: int
    sequence: int
    template_ids: tuple[int, ...]
    search_ids: tuple[int, ...]
    positive: bool = True
    search_source: tuple[int, int] | None = None
    centre_search_box: bool = False


class FramePositions:
    """Sorted flat positions (into an ``AnnotationIndex``) of the frames with some property, per sequence."""

    def __init__(self, mask: np.ndarray, offsets: np.ndarray) -> None:
        self.positions = np.flatnonzero(mask)
        self.offsets = offsets
        self.bounds = np.searchsorted(self.positions, offsets)  # sequence i: positions[bounds[i]:bounds[i+1]]

    def counts(self) -> np.ndarray:
        return np.diff(self.bounds)

    def pick(self, seq: int, k: int, lo: int, hi: int, rng: np.random.Generator) -> np.ndarray | None:
        """``k`` frame ids drawn with replacement among this set in ``[max(lo, 0), min(hi, L))``, or None."""
        start, end = int(self.offsets[seq]), int(self.offsets[seq + 1])
        a = int(np.searchsorted(self.positions, start + max(lo, 0)))
        b = int(np.searchsorted(self.positions, start + min(hi, end - start)))
        if b <= a:
            return None
        return self.positions[rng.integers(a, b, size=k)] - start


class PairSampler(ABC):
    """Shared §2.1 part: annotation indexes, usable sequences, dataset/sequence choice.

    A video sequence is usable when it has ``> 2 * (n_t + n_s)`` visible frames and ``>= min_length``
    frames; one whose annotations could not be parsed is never usable (the reader already warned).
    """

    def __init__(self, readers: Sequence[SequenceReader], ratios: Sequence[float] | None = None,
                 num_templates: int = 1, num_search: int = 1, min_length: int = 20) -> None:
        if not readers:
            raise ValueError("a pair sampler needs at least one dataset reader")
        if num_templates < 1 or num_search < 1:
            raise ValueError(f"need >= 1 template and search frame (got {num_templates}, {num_search})")
        weights = np.array(ratios if ratios is not None else [r.num_sequences for r in readers], dtype=np.float64)
        if weights.shape != (len(readers),) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"dataset ratios {weights.tolist()} must be one non-negative number per dataset, "
                             "not all 0")
        self.readers = list(readers)
        self.probabilities = weights / weights.sum()
        self.num_templates, self.num_search, self.min_length = num_templates, num_search, min_length
        self.indexes: list[AnnotationIndex] = [r.preload() for r in self.readers]
        self.visible = [FramePositions(ix.visible, ix.offsets) for ix in self.indexes]
        self.usable: list[np.ndarray] = []
        self.skipped: dict[str, list[str]] = {}
        for reader, index, visible in zip(self.readers, self.indexes, self.visible, strict=True):
            ok = index.errors == ""
            if reader.is_video:
                enough = (visible.counts() > 2 * (num_search + num_templates)) & (index.lengths >= min_length)
                self._report_short(reader, index, visible, ok & ~enough)
                ok &= enough
            else:
                ok &= index.lengths >= 1
            self.skipped[reader.name] = [str(n) for n in index.names[~ok]]
            usable = np.flatnonzero(ok)
            if usable.size == 0:
                raise ValueError(
                    f"dataset '{reader.name}' has no sequence with >= {min_length} frames and more than "
                    f"{2 * (num_search + num_templates)} visible frames: check its root and split"
                )
            self.usable.append(usable)

    def _report_short(self, reader: SequenceReader, index: AnnotationIndex, visible: FramePositions,
                      short: np.ndarray) -> None:
        ids = np.flatnonzero(short)
        if not ids.size:
            return
        examples = ", ".join(
            f"'{index.names[i]}' ({int(index.lengths[i])} frames, {int(visible.counts()[i])} visible)"
            for i in ids[:MAX_LISTED_SEQUENCES])
        first = reader.frame_path(int(ids[0]), 0).parent
        warnings.warn(
            f"{reader.name}: {ids.size} of {len(index)} sequences are never drawn (fewer than {self.min_length} "
            f"frames or at most {2 * (self.num_templates + self.num_search)} visible frames), e.g. {examples}; "
            f"first one at '{first}'", stacklevel=3)

    def choose_sequence(self, rng: np.random.Generator) -> tuple[int, int]:
        d = int(rng.choice(len(self.readers), p=self.probabilities))
        return d, int(self.usable[d][rng.integers(len(self.usable[d]))])

    def length(self, d: int, seq: int) -> int:
        return int(self.indexes[d].offsets[seq + 1] - self.indexes[d].offsets[seq])

    def draw(self, rng: np.random.Generator) -> PairDraw:
        d, seq = self.choose_sequence(rng)
        if not self.readers[d].is_video:
            return PairDraw(d, seq, (0,) * self.num_templates, (0,) * self.num_search)
        return self.draw_frames(d, seq, rng)

    @abstractmethod
    def draw_frames(self, d: int, seq: int, rng: np.random.Generator) -> PairDraw:
        """Frame ids of one sample from video sequence ``seq`` of dataset ``d`` (raise SampleRejected if none)."""


class CausalPairSampler(PairSampler):
    """The ``causal`` sampler (§2.2): search frames strictly after the latest template, within the gap."""

    def __init__(self, readers: Sequence[SequenceReader], ratios: Sequence[float] | None = None,
                 num_templates: int = 1, num_search: int = 1, max_gap: int = 200, min_length: int = 20,
                 gap_increase: int = 5, max_gap_retries: int = 1000) -> None:
        super().__init__(readers, ratios, num_templates, num_search, min_length)
        self.max_gap, self.gap_increase, self.max_gap_retries = max_gap, gap_increase, max_gap_retries

    def draw_frames(self, d: int, seq: int, rng: np.random.Generator) -> PairDraw:
        visible, length = self.visible[d], self.length(d, seq)
        n_t, n_s, gap = self.num_templates, self.num_search, 0
        for _ in range(self.max_gap_retries):
            base = visible.pick(seq, 1, n_t - 1, length - n_s, rng)
            if base is None:
                raise SampleRejected("no visible frame can serve as the latest template")
            b = int(base[0])
            prev = visible.pick(seq, n_t - 1, b - self.max_gap - gap, b, rng) if n_t > 1 else np.empty(0, int)
            if prev is None:
                gap += self.gap_increase
                continue
            search = visible.pick(seq, n_s, b + 1, b + self.max_gap + gap, rng)
            gap += self.gap_increase
            if search is not None:
                return PairDraw(d, seq, (b, *map(int, prev)), tuple(map(int, search)))
        raise SampleRejected(f"no causal frame pair found in {self.max_gap_retries} tries")


class TridentPairSampler(PairSampler):
    """``trident`` / ``trident_pro`` / ``stark`` (§2.4): template 1 and the search frame uniform over the
    visible frames; one extra template per gap in ``[s, s+G)`` if template 1 >= s, else ``[s-G, s)``.

    Extra templates must be visible (trident), anything (trident_pro) or have a box (stark).
    """

    def __init__(self, readers: Sequence[SequenceReader], ratios: Sequence[float] | None = None,
                 mode: str = "trident_pro", max_gaps: Sequence[int] = (200,), min_length: int = 20,
                 max_retries: int = 1000) -> None:
        if mode not in SAMPLER_MODES[1:]:
            raise ValueError(f"unknown trident mode '{mode}': use one of {SAMPLER_MODES[1:]}")
        super().__init__(readers, ratios, 1 + len(max_gaps), 1, min_length)
        self.mode, self.max_gaps, self.max_retries = mode, tuple(int(g) for g in max_gaps), max_retries
        if mode == "trident":
            self.extra_frames = self.visible
        elif mode == "stark":
            self.extra_frames = [FramePositions(ix.valid, ix.offsets) for ix in self.indexes]
        else:
            self.extra_frames = None  # trident_pro: any frame

    def draw_frames(self, d: int, seq: int, rng: np.random.Generator) -> PairDraw:
        visible, length = self.visible[d], self.length(d, seq)
        for _ in range(self.max_retries):
            first, search = (int(visible.pick(seq, 1, 0, length, rng)[0]) for _ in range(2))
            extras = []
            for gap in self.max_gaps:
                lo, hi = (search, search + gap) if first >= search else (search - gap, search)
                if self.extra_frames is None:
                    lo, hi = max(lo, 0), min(hi, length)
                    extra = None if hi <= lo else rng.integers(lo, hi, size=1)
                else:
                    extra = self.extra_frames[d].pick(seq, 1, lo, hi, rng)
                if extra is None:
                    break
                extras.append(int(extra[0]))
            else:
                return PairDraw(d, seq, (first, *extras), (search,))
        raise SampleRejected(f"no {self.mode} templates found in {self.max_retries} tries")


class PositiveNegativeSampler:
    """§2.6: with ``positive_prob`` a normal pair of ``base``; otherwise a negative (``positive=False``).

    A negative's search frame is a non-visible frame of the same video (its box replaced by a centred
    W/8 x H/8 box), or, when the video has none or the dataset is an image dataset, any frame of a
    random sequence of a random dataset with its own box.
    """

    def __init__(self, base: PairSampler, positive_prob: float = 0.5) -> None:
        if not 0.0 <= positive_prob <= 1.0:
            raise ValueError(f"positive_prob must be in [0, 1], got {positive_prob}")
        if base.num_search != 1:
            raise ValueError("negative sampling makes one search frame per sample")
        self.base, self.positive_prob = base, positive_prob
        self.readers = base.readers
        self.skipped = base.skipped
        self.hidden = [FramePositions(~ix.visible, ix.offsets) for ix in base.indexes]

    def draw(self, rng: np.random.Generator) -> PairDraw:
        pair = self.base.draw(rng)
        if rng.random() < self.positive_prob:
            return pair
        d, seq = pair.dataset, pair.sequence
        if self.readers[d].is_video:
            hidden = self.hidden[d].pick(seq, 1, 0, self.base.length(d, seq), rng)
            if hidden is not None:
                return replace(pair, search_ids=(int(hidden[0]),), positive=False, centre_search_box=True)
        d2, seq2 = self.base.choose_sequence(rng)
        frame = int(rng.integers(self.base.length(d2, seq2))) if self.readers[d2].is_video else 0
        return replace(pair, search_ids=(frame,), positive=False, search_source=(d2, seq2))


def build_pair_sampler(mode: str, readers: Sequence[SequenceReader], ratios: Sequence[float] | None,
                       num_templates: int, max_gap: int, positive_prob: float | None = None,
                       ) -> PairSampler | PositiveNegativeSampler:
    """The sampler a DataModule configuration asks for (``sampler_mode``, ``positive_prob``)."""
    if mode == "causal":
        sampler: PairSampler = CausalPairSampler(readers, ratios, num_templates=num_templates, max_gap=max_gap)
    elif mode in SAMPLER_MODES:
        sampler = TridentPairSampler(readers, ratios, mode=mode, max_gaps=(max_gap,) * (num_templates - 1))
    else:
        raise ValueError(f"unknown sampler_mode '{mode}' at data.init_args.sampler_mode: use one of {SAMPLER_MODES}")
    return sampler if positive_prob is None else PositiveNegativeSampler(sampler, positive_prob)
