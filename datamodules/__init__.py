"""Tracking data: readers, the pair sampler, crops and augmentation, SynthTrack."""

import cv2

# OpenCV's own thread pool is switched off for every process that imports the data code: the
# DataLoader workers already run in parallel, and a pool inherited through fork() can deadlock
# the child (reconfiguring it there waits on the parent's dead threads).
cv2.setNumThreads(0)
