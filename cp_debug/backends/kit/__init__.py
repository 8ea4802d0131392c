"""A kit's results read back from the target (`trt-*@KIT`): the folder's layout and manifest, its results, the runner
that replays them."""
