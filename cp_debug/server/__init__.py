"""A resident cpdebug process (`cpdebug serve`, floor 11¾) and the client half that hands it every other command.

Every `cpdebug` command starts by importing torch, ONNX Runtime and numba, and on a GPU by opening CUDA's context,
loading ONNX Runtime's CUDA provider and making the first Triton kernel: 2.5-3.5 s of a warm 7.5 s bisect on the
H100, all of it the same in every run. The server pays for them once and keeps them. While one is up for this
environment, `client.forward` (the first thing `cli.main.entry` does) sends it the command — the argument list, the
caller's folder, environment and umask, and the caller's own standard streams (passed over the socket, so the output
lands on the caller's terminal or pipe as if written there, progress bars and colours included) — and the caller
exits with the command's exit code. Ctrl-C in the caller interrupts the command in the server (exit 130, as in one
process); a caller that goes away interrupts it too.

A command runs in the caller's own process instead (`forward` returns None) when no server is up, when
`CPDEBUG_SERVER=off`, and when the server cannot run it exactly as the caller would: another cp_debug or other
installed libraries than the caller's (`where.fingerprint`), an environment variable read when a library loads that
differs (`where.FIXED_AT_START`), another umask, or an option that runs the user's own Python file (its imports would
stay cached in the server). The caller is told why in one line on stderr.

One command runs at a time, on the server's main thread (where Python delivers Ctrl-C); the others wait in line. The
socket lives in a folder only its user may enter (`$XDG_RUNTIME_DIR` or the temporary folder), and the server answers
only its own user (SO_PEERCRED). Nothing of a command outlives it but what is process-wide by nature: imported
modules, CUDA's context, thread pools, and caches keyed by the content they hold.

The modules: `where.py` (the socket, its log and folder; the code's fingerprint and the variables fixed at the
start), `wire.py` (JSON lines and file descriptors over the socket), `client.py` (`forward` and `ask`: what the entry
point and `cpdebug serve` call), `resident.py` (`Server`: the line of commands, signals, the idle end), `warm.py`
(`warm_up`: what every command loads, loaded once; `CPDEBUG_SERVER_WARM_UP=off` for the tests of a server's start and
idle end), `hold.py` (for tests: the start, a command's turn or the idle clock held at a named phase). The package
knows nothing of the commands: the `Server` takes its command runner as a callable (`cli.serve_cmd.command_runner`),
and only `cli.main` (`forward`) and `cli.serve_cmd` import it (a forbidden contract in pyproject.toml).
"""
