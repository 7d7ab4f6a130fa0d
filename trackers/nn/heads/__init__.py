"""Prediction heads: one file per head family."""
