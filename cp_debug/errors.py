"""One error hierarchy: the CLI prints `str(err)` as one line and exits with `err.exit_code`."""

from __future__ import annotations


class CpDebugError(Exception):
    """A user-facing error: the message says what is wrong and what to do."""

    exit_code = 2


class BadInputError(CpDebugError):
    """A file, shape, name, value or option the user gave cannot be used (exit 2)."""


class CheckpointError(BadInputError):
    """A checkpoint does not fit the model it is loaded into."""


class BackendUnavailableError(CpDebugError):
    """A requested backend cannot run on this machine (exit 3); the message says what to install."""

    exit_code = 3


class BackendRuntimeError(CpDebugError):
    """A backend failed building or running a model it accepted (exit 3): a TensorRT engine build or inference
    error, with the backend's own message. Not the user's input, and not a bug of cp_debug."""

    exit_code = 3
