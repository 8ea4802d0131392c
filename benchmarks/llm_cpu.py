"""Issue 116 item 5: where a bisect's CPU seconds go, session by session, run by run, without a profiler.

    python benchmarks/llm_cpu.py [--wrap MODULE:FUNCTION ...] -- bisect --onnx OUT/fp32/model.onnx \
        -b ort,ort@OUT/int4 --inputs OUT/prompt.npz --generate 8 --json report.json

runs the command in this process (`cp_debug.cli.main.main`) with every ONNX Runtime session made through
`ort_sessions.open_session` timed: the thread that made it, its thread CPU seconds, the process's and the wall, when it
began, the outputs it holds; each of its runs with its thread CPU seconds and the shapes of `input_ids` and
`attention_mask` fed. `--wrap cp_debug.precision.nbits:weight_unit` (a class's method as
`module:Class.method`) times that function by its thread's CPU clock, calls summed. Printed to stderr at exit, with
the process's CPU seconds. cProfile inflates code that calls many small functions (s23: rich's table 1.24 s under it,
0.13 s alone), so the clock is read around each call only; set CPDEBUG_CACHE_DIR to a fresh folder as
`llm_size.py measure` does.
"""

from __future__ import annotations

import atexit
import functools
import importlib
import sys
import threading
import time

ROWS: list[tuple] = []
TIMES: dict[str, list] = {}
T0 = time.perf_counter()


def _timed_sessions() -> None:
    import cp_debug.ort_sessions as sessions

    made = sessions.open_session

    def open_session(src, so=None, providers=("CPUExecutionProvider",), **kwargs):
        c0, p0, w0 = time.thread_time(), time.process_time(), time.perf_counter()
        sess = made(src, so, providers, **kwargs)
        name = src if isinstance(src, str) else f"<a model's bytes, {len(src) >> 10} KiB>"
        ROWS.append(("session", threading.current_thread().name, name[-60:], time.thread_time() - c0,
                     time.process_time() - p0, time.perf_counter() - w0, w0 - T0, len(sess.get_outputs())))
        run = sess.run

        def timed_run(outputs, feed, *args, **kw):
            c = time.thread_time()
            got = run(outputs, feed, *args, **kw)
            shapes = {k: tuple(v.shape) for k, v in feed.items() if k in ("input_ids", "attention_mask")}
            ROWS.append(("run", threading.current_thread().name, name[-60:], time.thread_time() - c, shapes,
                         len(outputs or [])))
            return got
        sess.run = timed_run
        return sess
    sessions.open_session = open_session  # before the modules that import it by name are imported


def _wrap(spec: str) -> None:
    module, attr = spec.split(":")
    owner = importlib.import_module(module)
    *path, last = attr.split(".")
    for part in path:
        owner = getattr(owner, part)
    fn = getattr(owner, last)

    @functools.wraps(fn)
    def timed(*args, **kwargs):
        c = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            t = TIMES.setdefault(spec, [0.0, 0])
            t[0] += time.thread_time() - c
            t[1] += 1
    setattr(owner, last, timed)


def _said() -> None:
    for row in ROWS:
        if row[0] == "session":
            _, thread, name, cpu, proc, wall, began, outs = row
            print(f"session {name}  [{thread}]  thread CPU {cpu:.3f} s, process {proc:.3f}, wall {wall:.3f}; began "
                  f"at {began:.2f} s; {outs} outputs", file=sys.stderr)
        else:
            _, thread, name, cpu, shapes, outs = row
            print(f"  run {name}  [{thread}]  thread CPU {cpu:.3f} s  {shapes}  {outs} outputs", file=sys.stderr)
    for spec, (cpu, calls) in sorted(TIMES.items(), key=lambda kv: -kv[1][0]):
        print(f"function {spec}: {cpu:.3f} thread CPU s, {calls} calls", file=sys.stderr)
    print(f"process CPU {time.process_time():.2f} s, wall {time.perf_counter() - T0:.2f} s", file=sys.stderr)


def main() -> None:
    args = sys.argv[1:]
    cut = args.index("--") if "--" in args else 0
    ours, command = args[:cut], args[cut + 1:] if cut or args[:1] == ["--"] else args
    _timed_sessions()
    for i, word in enumerate(ours):
        if word == "--wrap":
            _wrap(ours[i + 1])
    atexit.register(_said)
    from cp_debug.cli.main import main as cli

    sys.argv = ["cpdebug", *command]
    cli()  # under a wrapper's CPU clocks: the process ends the usual way (cli.main.leave), atexit heard


if __name__ == "__main__":
    main()
