"""Deployment: the per-frame network of every family as ONNX graphs, and an onnxruntime drop-in for it."""
