"""Detection-level evaluation: nuScenes metrics through nuscenes-devkit, submission files, detection diffs."""
