#!/usr/bin/env bash
# The GPU-speed measurement in one go: model steps (MAE and NoR-MAE interleaved, eager and compiled, for
# ViT-Tiny/16 and ViT-Small/16 at 224 px, batch 256, bf16) and the two data loaders (torchvision, DALI)
# on a generated ImageNet-like JPEG folder, on whatever GPU this machine has. At most about 8 minutes on
# one H100: every step runs under a timeout cut to what is left of the budget, the expensive ones last.
#
#   bench/gpu.sh                 # on the GPU (CUDA must be available)
#   bench/gpu.sh --device cpu    # the same pipeline with tiny settings, a few minutes on a CPU
#
# Writes one JSON file per configuration into $OUT if set, else bench/results/<date-time>/:
#   <model>-<img>px-b<batch>-<eager|compiled>.json   `normae bench` output (images/s, MFU, memory, ratios)
#   loader-torchvision.json, loader-dali.json         `normae bench --loader-only` output (images/s)
#   bench-data.json                                  the generated folder's manifest
# A configuration that could not run writes {"status": "skipped" | "failed" | "timed_out", "reason": ...}
# instead. log.txt holds every command and its messages. Needs no internet; uses .venv/bin/normae if the
# repository has one, else `normae` on PATH.
set -uo pipefail  # not -e: a configuration that fails writes why, and the others still run

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }
device=cuda
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device="${2:?--device needs cuda or cpu}"; shift 2 ;;
        --device=*) device="${1#--device=}"; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "bench/gpu.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
done
case "$device" in cuda | cpu) ;; *) echo "bench/gpu.sh: --device must be cuda or cpu, got $device" >&2; exit 2 ;; esac

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -x "$repo/.venv/bin/normae" ]; then
    normae="$repo/.venv/bin/normae" python="$repo/.venv/bin/python"
elif command -v normae > /dev/null; then
    normae="$(command -v normae)" python="$(dirname "$normae")/python"
    [ -x "$python" ] || python=python3
else
    echo "bench/gpu.sh: no normae: run 'make venv' (or pip install -e .) first" >&2; exit 2
fi
out="${OUT:-$repo/bench/results/$(date +%Y-%m-%d_%H%M%S)}"
mkdir -p "$out" || exit 2
log="$out/log.txt"

if [ "$device" = cuda ]; then
    if ! "$python" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
        echo "bench/gpu.sh: CUDA is not available here; bench/gpu.sh --device cpu runs the tiny version" >&2
        exit 1
    fi
    models="vit_tiny vit_small" img=224 patch=16 batch=256 steps=20 warmup=5
    images=10000 loader_images=4096 workers="" budget=470
else
    models="vit_micro vit_mini" img=32 patch=4 batch=8 steps=2 warmup=1
    images=64 loader_images=32 workers=2 budget=600
fi
deadline=$((SECONDS + budget))

# write_status FILE STATUS REASON: the JSON of a configuration that has no measurement.
write_status() {
    "$python" - "$@" << 'EOF'
import json, sys
path, status, reason = sys.argv[1:4]
with open(path, "w") as handle:
    json.dump({"status": status, "reason": reason}, handle)
    handle.write("\n")
EOF
}

# run NAME CAP COMMAND...: run COMMAND (which writes $out/NAME.json itself) under a timeout of at most CAP
# seconds and what is left of the budget; record a failure, a skip or a timeout in NAME.json instead.
run() {
    local name="$1" cap="$2"
    shift 2
    local file="$out/$name.json" left=$((deadline - SECONDS)) rc
    [ "$cap" -gt "$left" ] && cap=$left
    echo "+ $* (timeout ${cap}s)" >> "$log"
    if [ "$cap" -lt 15 ]; then
        write_status "$file" skipped "the ${budget}s budget of bench/gpu.sh was spent before this configuration"
        echo "$name: skipped (budget spent)"
        return
    fi
    local started=$SECONDS
    timeout --signal=TERM --kill-after=10 "$cap" "$@" > /dev/null 2> "$out/.stderr"
    rc=$?
    cat "$out/.stderr" >> "$log"
    local reason
    reason="$(grep -v '^\[normae\]' "$out/.stderr" | tail -1)"
    if [ $rc -eq 0 ]; then
        echo "$name: done in $((SECONDS - started))s"
        grep '^\[normae\] bench:' "$out/.stderr" | sed 's/^\[normae\] bench: /    /'
    elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        write_status "$file" timed_out "stopped after ${cap}s (the time left of bench/gpu.sh's ${budget}s budget)"
        echo "$name: timed out after ${cap}s"
    elif [ $rc -eq 2 ] && grep -q 'nvidia-dali' "$out/.stderr"; then
        write_status "$file" skipped "${reason:-DALI is not installed}"
        echo "$name: skipped: $reason"
    else
        write_status "$file" failed "exit status $rc: ${reason:-see log.txt}"
        echo "$name: failed (exit $rc): $reason"
    fi
    rm -f "$out/.stderr"
}

echo "bench/gpu.sh: device $device, results in $out"
"$python" -c 'import torch; print("torch", torch.__version__, "|", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA")'
data="$(mktemp -d "${TMPDIR:-/tmp}/normae-bench-images.XXXXXX")"  # outside $OUT: the pictures are not results
trap 'rm -rf "$data" "$out/.stderr"' EXIT
run bench-data 120 sh -c "\"$normae\" bench-data --out \"$data\" --images $images > \"$out/bench-data.json\""
for loader in torchvision dali; do
    run "loader-$loader" 120 "$normae" bench --device "$device" --loader "$loader" --data "$data" --loader-only \
        --img-size "$img" --batch-size "$batch" --loader-images "$loader_images" \
        ${workers:+--loader-workers "$workers"} --out "$out/loader-$loader.json"
done
for mode in eager compiled; do
    for model in $models; do
        name="$model-${img}px-b$batch-$mode"
        run "$name" $([ $mode = eager ] && echo 120 || echo 240) "$normae" bench --device "$device" --model "$model" \
            --img-size "$img" --patch-size "$patch" --batch-size "$batch" --steps "$steps" --warmup "$warmup" \
            --methods mae,nor_mae $([ $mode = compiled ] && echo --compile) --out "$out/$name.json"
    done
done
echo "bench/gpu.sh: finished in ${SECONDS}s; $(ls "$out"/*.json | wc -l) JSON files in $out"
