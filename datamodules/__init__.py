"""Tracking data: readers, the pair sampler, training-pair processing and augmentation, SynthTrack.

The crops themselves, normalisation and frame decoding are shared with tracking and live below, in
``trackers.geometry`` and ``trackers.frames``.
"""

import cv2

# OpenCV's own thread pool is switched off for every process that imports the data code: the
# DataLoader workers already run in parallel, and a pool inherited through fork() can deadlock
# the child (reconfiguring it there waits on the parent's dead threads).
cv2.setNumThreads(0)
