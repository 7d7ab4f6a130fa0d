"""SynthTrack, the embedded benchmark: ``write_synthtrack`` (layouts) over config, appearance, motion and rendering.

The reader side (split-file names, reader type ``synthtrack``) is ``datamodules.readers.synthtrack``.
"""

from datamodules.synthtrack.config import DEFAULT_CLASSES, SynthTrackConfig
from datamodules.synthtrack.layouts import LAYOUTS, META_FILE, write_synthtrack

__all__ = ["DEFAULT_CLASSES", "LAYOUTS", "META_FILE", "SynthTrackConfig", "write_synthtrack"]
