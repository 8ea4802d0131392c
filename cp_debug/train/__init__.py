"""Training CenterPoint on scenes with ground truth (floor 11): targets, losses, the loop, held-out validation.

The training loop (targets, losses, augmentation, validation through `eval`); a recipe's part is its `train` plug-in
(`detector()` → `train.detectors.Detector`: preset, training and eval model, batch losses, detect, `load_checkpoint`;
`cp_debug/recipes/__init__.py`).
"""
