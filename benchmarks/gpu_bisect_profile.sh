#!/usr/bin/env bash
# Where a warm own-process bisect's seconds go, on one GPU host (issue 87, item 4), after benchmarks/gpu_setup.sh:
#   source benchmarks/gpu_setup.sh && bash benchmarks/gpu_bisect_profile.sh OUT [PAIR] [PRESET]
# 1. one bisect of PAIR (default ort-cuda,ort-cuda-fp16) to fill the export cache and the bytecode, then three warm
#    runs, each a fresh `python -m cp_debug.cli.main bisect --level all` (CPDEBUG_SERVER=off), wall around the process;
# 2. py-spy (where installed) over one more warm run: every thread, idle frames too, 250 Hz, collapsed stacks
#    (OUT/bisect.prof.txt; `python benchmarks/stacks_summary.py OUT/bisect.prof.txt` sums them by function).
# (cProfile writes nothing here: the command ends its process without Python's exit hooks, where cProfile writes.)
set -u
out=${1:-/tmp/bisect_profile}; pair=${2:-ort-cuda,ort-cuda-fp16}; preset=${3:-awml-base}
mkdir -p "$out"
export CPDEBUG_SERVER=off
args=(bisect --preset "$preset" --level all --backends "$pair" --quiet --json "$out/report.json")
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -m cp_debug.cli.main "${args[@]}" > /dev/null 2>&1; echo "first run: exit $?"
for i in 1 2 3; do
  t0=$(date +%s.%N)
  python3 -m cp_debug.cli.main "${args[@]}" > /dev/null 2>&1; code=$?
  echo "warm run $i: exit $code, $(python3 -c "print(f'{$(date +%s.%N) - $t0:.2f}')") s"
done
spy=$(command -v py-spy || ls /tmp/site/bin/py-spy 2>/dev/null)
if [ -n "$spy" ]; then
  "$spy" record --rate 250 --idle --threads --format raw -o "$out/bisect.prof.txt" -- \
    python3 -m cp_debug.cli.main "${args[@]}" > "$out/spy.log" 2>&1
  echo "py-spy exit $?: $(wc -l < "$out/bisect.prof.txt") stacks"
fi
