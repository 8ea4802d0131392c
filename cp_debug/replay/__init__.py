"""Replay a deployment's own detections against the reference and name the glue that explains them."""
