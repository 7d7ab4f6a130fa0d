"""SynthTrack: a deterministic, procedurally generated tracking benchmark written in the LaSOT layout
(or, on request, the GOT-10k layout, to exercise a second reader on the same data).

No real dataset ships with the project, so this one is made on demand; because it is written to
disk as LaSOT (``<class>/<class>-<n>/img/%08d.jpg``, ``groundtruth.txt``, ``full_occlusion.txt``,
``out_of_view.txt``, ``nlp.txt``) plus ``train_split.txt`` / ``test_split.txt``, the real reader,
sampler, crops, evaluation and result writers are what run on it. The file names are the readers'
own constants (``datamodules.readers.{lasot,got10k,synthtrack}``), so writer and readers cannot
disagree.

Each sequence is hard for a tracker that does not look: a textured target moves over a panning,
cluttered background with scale/aspect oscillation, large jumps (fast motion), similar-looking
distractors (same shape and pattern, shifted hue) orbiting and crossing it in front or behind,
occluders sliding over it (partial or full, full flagged), out-of-view spells (flagged, GT
``0,0,0,0``) and illumination changes. The target keeps its own colours and pattern for the whole
sequence, so a learned tracker can follow it. Every random choice comes from one numpy Generator
per sequence seeded with ``(seed, sequence index)``: the same seed gives byte-identical files.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from datamodules.readers import got10k, lasot
from datamodules.readers.synthtrack import split_file_path
from datamodules.synthtrack.config import DEFAULT_CLASSES, SHAPE_OF_CLASS, SynthTrackConfig
from datamodules.synthtrack.render import Track, write_frames

META_FILE = "synthtrack.json"  # the generator's arguments, for the record
LAYOUTS = ("lasot", "got10k")


def write_synthtrack(
    out: str | Path,
    num_train: int,
    num_test: int,
    length: int | tuple[int, int] = (60, 120),
    image_size: tuple[int, int] = (320, 240),
    seed: int = 0,
    classes: Sequence[str] = DEFAULT_CLASSES,
    config: SynthTrackConfig | None = None,
    jpeg_quality: int = 90,
    layout: str = "lasot",
) -> Path:
    """Write SynthTrack to ``out``; returns ``out``.

    ``length`` is a fixed frame count or an inclusive (min, max) range; ``image_size`` is (W, H).
    Sequences are assigned round-robin to ``classes``. ``layout='lasot'``: ``<class>/<class>-<k>/``
    (k from 1, train first) plus train/test split lists (reader type ``synthtrack``).
    ``layout='got10k'``: train sequences in ``train/GOT-10k_Train_<k>/``, test sequences in
    ``val/GOT-10k_Val_<k>/``, each folder with its ``list.txt`` (reader type ``got10k``, split null).
    The same seed gives the same frames and boxes in either layout.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown SynthTrack layout '{layout}': use one of {LAYOUTS}")
    cfg = config or SynthTrackConfig()
    unknown = [c for c in classes if c not in SHAPE_OF_CLASS]
    if unknown or not classes:
        raise ValueError(f"unknown SynthTrack classes {unknown}: choose from {sorted(SHAPE_OF_CLASS)}")
    lo, hi = (length, length) if isinstance(length, int) else (int(length[0]), int(length[1]))
    if lo < 2 or hi < lo:
        raise ValueError(f"SynthTrack length must be >= 2 (got {length})")
    width, height = int(image_size[0]), int(image_size[1])
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)

    names: list[str] = []
    counters = {c: 0 for c in classes}
    for index in range(num_train + num_test):
        cls = classes[index % len(classes)]
        counters[cls] += 1
        if layout == "lasot":
            name = f"{cls}-{counters[cls]}"
            seq_dir = root / cls / name
            image_dir = seq_dir / lasot.IMAGE_DIR
        else:
            subset, k = ("train", index + 1) if index < num_train else ("val", index - num_train + 1)
            name = f"GOT-10k_{subset.capitalize()}_{k:06d}"
            seq_dir = image_dir = root / subset / name
        names.append(name)
        rng = np.random.default_rng([seed, index])
        seq_len = int(rng.integers(lo, hi + 1))
        track = write_frames(image_dir, rng, seq_len, width, height, cls, cfg, jpeg_quality)
        if layout == "lasot":
            _write_lasot_annotations(seq_dir, track)
        else:
            _write_got10k_annotations(seq_dir, track, cls, width, height)

    if layout == "lasot":
        split_file_path(root, "train").write_text("".join(f"{n}\n" for n in names[:num_train]))
        split_file_path(root, "test").write_text("".join(f"{n}\n" for n in names[num_train:]))
    else:
        for subset, subset_names in (("train", names[:num_train]), ("val", names[num_train:])):
            (root / subset).mkdir(parents=True, exist_ok=True)
            (root / subset / got10k.LIST_FILE).write_text("".join(f"{n}\n" for n in subset_names))
    meta = dict(num_train=num_train, num_test=num_test, length=[lo, hi], image_size=[width, height],
                seed=seed, classes=list(classes), jpeg_quality=jpeg_quality, config=asdict(cfg), layout=layout)
    (root / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
    return root


def _write_lasot_annotations(seq_dir: Path, track: Track) -> None:
    (seq_dir / lasot.GT_FILE).write_text("".join(f"{x},{y},{w},{h}\n" for x, y, w, h in track.boxes))
    (seq_dir / lasot.FULL_OCCLUSION_FILE).write_text(",".join(map(str, track.occluded)) + "\n")
    (seq_dir / lasot.OUT_OF_VIEW_FILE).write_text(",".join(map(str, track.out_of_view)) + "\n")
    (seq_dir / lasot.LANGUAGE_FILE).write_text(track.description)


def _write_got10k_annotations(seq_dir: Path, track: Track, cls: str, width: int, height: int) -> None:
    """GOT-10k files (spec §1.2): absence = out of view; cover 0 when fully occluded or absent."""
    (seq_dir / got10k.GT_FILE).write_text("".join(f"{x},{y},{w},{h}\n" for x, y, w, h in track.boxes))
    labels = ((got10k.ABSENCE_FILE, track.out_of_view), (got10k.COVER_FILE, track.cover),
              (got10k.CUT_BY_IMAGE_FILE, track.cut_by_image))
    for file_name, values in labels:
        (seq_dir / file_name).write_text("".join(f"{v}\n" for v in values))
    meta = {"url": "synthtrack", "begin": "00:00:00", "end": "00:00:00", "anno_fps": "10Hz", "object_class": cls,
            "motion_class": "synthetic", "major_class": "synthetic", "root_class": "object",
            "motion_adverb": "synthetic", "resolution": f"({width}, {height})"}
    (seq_dir / got10k.META_FILE).write_text("[METAINFO]\n" + "".join(f"{k}: {v}\n" for k, v in meta.items()))
