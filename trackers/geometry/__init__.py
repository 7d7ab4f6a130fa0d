"""Image geometry shared by training and tracking: crops and the frame <-> crop box mapping, normalisation."""
