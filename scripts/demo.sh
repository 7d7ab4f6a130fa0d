#!/usr/bin/env bash
# `make demo`: SynthTrack -> train a tiny OSTrack on CPU -> evaluate it and the first-box baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
DEMO_DIR=${DEMO_DIR:-outputs/demo}
SYNTH_DIR=${SYNTH_DIR:-data/synthtrack}
EXPERIMENT=(--config configs/ostrack_256.yaml --config configs/presets/cpu_smoke.yaml --config configs/presets/ostrack_tiny.yaml)
start=$(date +%s)

if [ ! -f "$SYNTH_DIR/test_split.txt" ]; then
  "$BIN/lightning" make-synthetic --out "$SYNTH_DIR"
fi

rm -rf "$DEMO_DIR"
"$BIN/lightning" fit "${EXPERIMENT[@]}" --trainer.default_root_dir "$DEMO_DIR"
ckpt=$(find "$DEMO_DIR" -name last.ckpt | head -n 1)
[ -n "$ckpt" ] || { echo "error: training wrote no last.ckpt under $DEMO_DIR" >&2; exit 1; }

"$BIN/lightning" test "${EXPERIMENT[@]}" --trainer.default_root_dir "$DEMO_DIR" \
  --ckpt_path "$ckpt" --model.init_args.results_dir "$DEMO_DIR/results" --model.init_args.tracker_name ostrack_tiny
"$BIN/lightning" test "${EXPERIMENT[@]}" --config configs/baselines/first_box.yaml \
  --trainer.default_root_dir "$DEMO_DIR" --model.init_args.results_dir "$DEMO_DIR/results"

echo
echo "SynthTrack test split, pytracking convention (what papers report):"
"$BIN/lightning" analyze --dataset-root "$SYNTH_DIR" --split "$SYNTH_DIR/test_split.txt" \
  --results "ostrack_tiny=$DEMO_DIR/results/synthtrack/ostrack_tiny" "first_box=$DEMO_DIR/results/synthtrack/first_box" \
  --out "$DEMO_DIR/plots"
echo "plots in $DEMO_DIR/plots; whole demo took $(( $(date +%s) - start )) s"
