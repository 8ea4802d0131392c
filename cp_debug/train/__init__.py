"""Training CenterPoint on scenes with ground truth: targets, losses, the loop, held-out validation."""
