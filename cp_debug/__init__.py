"""cp_debug: find where a deployed model's numbers part from PyTorch's, and why."""

__version__ = "0.1.0"
