#!/usr/bin/env bash
# Where a served bisect's seconds go (issue 87, item 4), on one GPU host, after benchmarks/gpu_setup.sh:
#   source benchmarks/gpu_setup.sh && bash benchmarks/gpu_served_profile.sh OUT [PAIR ...]
# For each pair (default: the ORT pair and the torch pair): a `cpdebug serve` of its own, two bisects through it (the
# first it serves, then a warm one, walls around the client), then py-spy attached to the server (every thread, idle
# frames too, 250 Hz, collapsed stacks) over a third: OUT/served-PAIR.prof.txt, summed by benchmarks/stacks_summary.py
# on the server's main thread and on all threads. The server's log is OUT/serve-PAIR.log.
set -u
out=${1:-/tmp/served_profile}; shift || true; preset=${PRESET:-awml-base}
pairs=("$@"); [ ${#pairs[@]} -gt 0 ] || pairs=(ort-cuda,ort-cuda-fp16 torch-cuda,ort-cuda-fp16)
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
spy=$(command -v py-spy || ls /tmp/site/bin/py-spy 2>/dev/null)
cli() { python3 -m cp_debug.cli.main "$@"; }
wall() { local t0; t0=$(date +%s.%N); "$@" > /dev/null 2>&1; local code=$?
         python3 -c "print(f'exit $code, {$(date +%s.%N) - $t0:.2f} s')"; }
for pair in "${pairs[@]}"; do
  tag=${pair//,/_}
  export CPDEBUG_SERVER=off
  cli bisect --preset "$preset" --level all --backends "$pair" --quiet --json "$out/own-$tag.json" > /dev/null 2>&1
  echo "$pair: own process (fills the caches): exit $?"
  unset CPDEBUG_SERVER
  cli serve --quiet --idle-minutes 30 > "$out/serve-$tag.log" 2>&1
  pid=$(cli serve --status 2>/dev/null | sed -n 's/.*server pid \([0-9]*\).*/\1/p')
  args=(bisect --preset "$preset" --level all --backends "$pair" --quiet --json "$out/served-$tag.json")
  echo "$pair: served first: $(wall cli "${args[@]}")"
  echo "$pair: served warm: $(wall cli "${args[@]}")"
  if [ -n "$spy" ] && [ -n "$pid" ]; then
    "$spy" record --rate 250 --idle --threads --format raw --pid "$pid" -o "$out/served-$tag.prof.txt" \
      > "$out/spy-$tag.log" 2>&1 &
    spy_pid=$!
    sleep 2  # py-spy attaches before the command starts (it samples an idle server meanwhile: idle frames only)
    echo "$pair: served under py-spy: $(wall cli "${args[@]}")"
    kill -INT $spy_pid; wait $spy_pid
    python3 benchmarks/stacks_summary.py "$out/served-$tag.prof.txt" --thread MainThread --top 60 --match '' \
      > "$out/served-$tag.main.txt" 2>&1
    python3 benchmarks/stacks_summary.py "$out/served-$tag.prof.txt" --top 40 > "$out/served-$tag.all.txt" 2>&1
    head -80 "$out/served-$tag.main.txt"
  fi
  echo "$pair: served warm again: $(wall cli "${args[@]}")"
  cli serve --stop --quiet
done
