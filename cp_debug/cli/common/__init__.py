"""What the commands share: option groups (the model options, samples, fix's graph options), help pages, errors mapped
to one line and an exit code, output, progress bars.

Option groups written once in `options.py` (the model options → `ModelRecord` by `model_record`, the INT8 calibration
options, `--backends` with the command's rule in its help, `recipe_name`), the samples of `--torch` / `--onnx` runs
of sweep and eval in `samples.py`, fix's in `fix_graph.py`; `help.py`: every help page's panels, examples, exit
codes, metavars, deprecated spellings; `errors.py`: errors mapped once (one line + exit code) around every command by
`cli/app.py` (`handle_errors`); `pipe.py`: a closed pipe quiet; `preflight.py`: what a command checks before it
spends time (`refuse_options`: the options of the default recipe a command refuses for another recipe,
`Recipe.refuses`); `output.py`, `bar.py`: the terminal's output and progress bars; `quiet.py`, `gs_log.py`:
third-party warnings and onnx-graphsurgeon's logger off the terminal; `what_runs.py`: what runs, said when a command
falls back to the built-in demo.
"""
