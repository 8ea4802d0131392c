"""cp_debug as a library, and the typed requests the command line builds too (a floor of its own, above the recipes and
features, below `cli/`).

- `bisect_request.py`: a bisect's request from option groups, one per idea (the model, its samples, the backends,
  the calibration, the comparison options): `cpdebug bisect` and `cp_debug.bisect(...)` both build it here.
- `bisect_run.py`: the request run: the model loaded, the engine built (the command adds its terminal and writers).
- `library.py`: `bisect(model, inputs, backends, **options)` and `assert_within_precision`, what `import cp_debug`
  gives (`cp_debug/__init__.py`), raising the command's one line as a `CpDebugError`.
- `report.py`: `Report`: outcome, exit code, root cause, findings, `.frame()` (pandas), `.to_json()` (the command's
  `--json`), and rich / HTML views for a notebook.
The pytest plugin is `cp_debug/pytest_plugin.py` (entry point `pytest11`)."""
