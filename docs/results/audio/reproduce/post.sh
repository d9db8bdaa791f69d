#!/bin/bash
# After both runs stopped: full val/test bits/byte of the final (latest) checkpoints, and 4 samples each.
# Run from the repository root after launch.sh: WORK=/tmp/audio_fsdd bash docs/results/audio/reproduce/post.sh
WORK=${WORK:-/tmp/audio_fsdd}
export PYTHONPATH=$PWD XLA_FLAGS=--xla_cpu_multi_thread_eigen=false
PY=${PY:-python}
R=$WORK/runs
for k in sashimi flat; do
  rm -rf $R/${k}_full; cp -r $R/$k $R/${k}_full
  # the copy evaluates the whole split (the runs capped evaluation at 2 batches)
  $PY - $R/${k}_full/config.json <<'PY'
import json, sys; p = sys.argv[1]; c = json.load(open(p)); c["train"]["eval_batches"] = None; json.dump(c, open(p, "w"), indent=2)
PY
done
core=0
for k in sashimi flat; do
  ( for s in val test; do nice -n 5 taskset -c $core $PY scripts/evaluate.py $R/${k}_full --split $s --checkpoint latest > $R/eval_${k}_$s.json 2> $R/eval_${k}_$s.err; done
    step=$(ls $R/$k/checkpoints | sort -n | tail -1)
    nice -n 5 taskset -c $core $PY scripts/generate.py $R/$k --n 4 --length 4000 --seed 0 --step $step --out $R/samples_$k > $R/gen_$k.json 2> $R/gen_$k.err ) &
  core=1
done
wait
