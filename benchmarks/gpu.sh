#!/usr/bin/env bash
# The one GPU check: a maintainer runs it once on a machine with a GPU; it takes under 8 minutes
# (the sum of the step limits below) and writes JSON figures to a folder.
#
#   bash benchmarks/gpu.sh [FOLDER]          # FOLDER: default $OUT, else ./gpu-check
#   bash benchmarks/gpu.sh --tiny [FOLDER]   # every size shrunk, any device (a CPU too), about a minute:
#                                            # proves the script runs before the one GPU run
#
# Steps (each in its own process, with its own time limit: SIGINT at the limit, which the training
# loop answers by saving and stopping, so the step still reports what it measured; SIGKILL 15 s
# later), figures in FOLDER/<step>.json, logs in FOLDER/<step>.log:
#   gpt         benchmarks/gpt.py --only gpu: the gpu preset on tinyshakespeare (time to val 1.47,
#               final val loss, tokens/s, MFU against the datasheet and a measured peak, GPU memory)
#   prepare     minilm prepare tinyshakespeare (memory-mapped token file)
#   pretrain    minilm pretrain --preset gpu on it, one process, briefly (tokens/s, val loss)
#   ddp         the same under torchrun, one process per GPU (nccl; gloo on a CPU), with torch.compile
#   generation  benchmarks/generation.py --json --device cuda --only kv --only hf (KV-cache speed-up,
#               minilm against Hugging Face; the int8/int4 file figures come from its CPU run)
#   finetune    benchmarks/finetune.py --json --device cuda --only minilm (MiniLM frozen + head, LoRA)
#   summary     benchmarks/gpu_check.py: every figure in FOLDER/gpu_check.json, and a table
# Environment: MINILM_DATA_DIR (offline datasets), PYTHON (default: .venv/bin/python, else python3).
set -u
cd "$(dirname "$0")/.."
TINY=0
if [ "${1:-}" = "--tiny" ]; then TINY=1; shift; fi
DEST=$(mkdir -p "${1:-${OUT:-gpu-check}}" && cd "${1:-${OUT:-gpu-check}}" && pwd)
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export MINILM_CACHE_DIR="${MINILM_CACHE_DIR:-$DEST/cache}"
: > "$DEST/steps.jsonl"
START=$(date +%s)
FAILED=0

# step NAME LIMIT_SECONDS COMMAND...: run it under its limit, log it, record its exit status
step() {
  local name=$1 limit=$(( $2 * SCALE )) t0 rc
  shift 2
  t0=$(date +%s)
  echo "== $name (limit ${limit} s): $*"
  if command -v timeout >/dev/null; then
    timeout -s INT -k 15 "$limit" "$@" >"$DEST/$name.log" 2>&1; rc=$?
  else
    "$@" >"$DEST/$name.log" 2>&1; rc=$?
  fi
  echo "{\"step\": \"$name\", \"rc\": $rc, \"seconds\": $(( $(date +%s) - t0 )), \"limit\": $limit}" >>"$DEST/steps.jsonl"
  if [ "$rc" -ne 0 ]; then
    FAILED=1; echo "   exit status $rc: see $DEST/$name.log"; tail -n 5 "$DEST/$name.log"
  fi
}

# a benchmark another issue owns: run it when it is there and takes --json and our options, else say why not
optional() {
  local name=$1 limit=$2 script=benchmarks/$1.py why="" usage flag
  shift 2
  if [ ! -f "$script" ]; then
    why="$script does not exist (yet)"
  else
    usage=$("$PYTHON" "$script" --help 2>&1)
    for flag in --json "$@"; do
      case "$flag" in --*) grep -q -- "$flag" <<<"$usage" || why="$script has no $flag option";; esac
    done
  fi
  if [ -n "$why" ]; then
    echo "== $name: skipped, $why"
    echo "{\"step\": \"$name\", \"skipped\": \"$why\"}" >>"$DEST/steps.jsonl"
  else
    step "$name" "$limit" "$PYTHON" "$script" --json "$DEST/$name.json" "$@"
  fi
}

SCALE=1  # the limits are the GPU run's budget; --tiny on a busy CPU gets four times as long
if [ "$TINY" = 1 ]; then
  SCALE=4; DEVICE=cpu; NPROC=2; PRESET=smoke; STEPS=10; EVAL=(--eval_interval 5 --eval_iters 2)
  GPT=(--tiny); QUICK=(--quick --device cpu); GEN=("${QUICK[@]}"); FT=("${QUICK[@]}")
else
  DEVICE=cuda; PRESET=gpu; STEPS=300; EVAL=(--eval_interval 150 --eval_iters 20)
  # one process per GPU, a power of two (1, 2, 4, 8...) so that it divides the preset's batch of 64
  NPROC=$("$PYTHON" -c "import torch; print(1 << (max(1, torch.cuda.device_count()).bit_length() - 1))")
  GPT=(); QUICK=(--device cuda)
  GEN=(--device cuda --only kv --only hf)  # decoding on the GPU; the int8/int4 file figures are the CPU run's
  FT=(--device cuda --only minilm)  # the MiniLM encoder, frozen and LoRA; the GPT-1 recipe needs longer than 50 s
fi
DATA="$DEST/data/tinyshakespeare-char"
PRETRAIN=(--data "$DATA" --preset "$PRESET" --max_steps "$STEPS" "${EVAL[@]}" --checkpoint_interval 0
          --progress false)

step gpt 225 "$PYTHON" benchmarks/gpt.py --only gpu "${GPT[@]}" --json "$DEST/gpt.json"
step prepare 15 "$PYTHON" -m minilm.cli prepare tinyshakespeare --tokenizer char --out "$DATA"
step pretrain 45 "$PYTHON" -m minilm.cli pretrain "${PRETRAIN[@]}" --out "$DEST/pretrain" --device "$DEVICE" \
  --compile false
step ddp 75 "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$NPROC" -m minilm.cli pretrain \
  "${PRETRAIN[@]}" --out "$DEST/ddp" --device "$DEVICE"
optional generation 50 "${GEN[@]}"
optional finetune 50 "${FT[@]}"
step summary 15 "$PYTHON" benchmarks/gpu_check.py "$DEST"
cat "$DEST/summary.log"
echo "gpu.sh: $(( $(date +%s) - START )) s in all; figures in $DEST/gpu_check.json"
exit "$FAILED"  # 1 when a step failed or ran out of time (its figures, if any, are still in the JSON)
