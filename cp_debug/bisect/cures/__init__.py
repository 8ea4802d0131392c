"""Cures and searches: the keep-FP32 / leave-out-of-INT8 search on its driver, the cure ladder, a deployed Q/DQ file's
cure in its tool's terms, a bug report's window."""
