"""cp_debug: find where a deployed model's numbers part from PyTorch's, and why."""


def __getattr__(name: str):
    """`cp_debug.__version__`: the installed distribution's version (importlib.metadata, one home: pyproject.toml),
    looked up when first asked for, so that importing cp_debug reads no metadata."""
    if name != "__version__":
        raise AttributeError(f"module 'cp_debug' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        value = version("cp-debug")
    except PackageNotFoundError:  # a source tree run without being installed
        value = "0+unknown"
    globals()["__version__"] = value
    return value
