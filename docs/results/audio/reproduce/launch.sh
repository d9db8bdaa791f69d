#!/bin/bash
# Both runs concurrently, niced, one core each (taskset; unpinned, the flat run's start-up wedged twice), same
# data, batch and optimizer; each stopped by SIGTERM (checkpoint of the last step) after $WALL seconds.
# Run from the repository root: WORK=/tmp/audio_fsdd bash docs/results/audio/reproduce/launch.sh
# (after python docs/results/audio/reproduce/make_fsdd_folder.py <fsdd>/recordings $WORK/data).
WORK=${WORK:-/tmp/audio_fsdd}
mkdir -p $WORK/runs
export PYTHONPATH=$PWD
# XLA CPU thread-pool deadlock (README, ssm/train/watchdog.py): the first launch wedged without it
export XLA_FLAGS=--xla_cpu_multi_thread_eigen=false
PY=${PY:-python}
WALL=${WALL:-1500}
COMMON="--cfg audio.sc09 --data.root $WORK/data --data.seq-len 4000 --data.batch-size 8 --data.eval-batch-size 25
 --optim.lr 1e-3 --optim.ssm-lr 1e-3 --optim.weight-decay 0.0 --optim.schedule constant --optim.warmup-steps 20
 --train.steps 100000 --train.eval-every 50 --train.eval-batches 2 --train.eval-splits val --train.log-every 10
 --train.save-every 100000 --train.keep 1 --train.progress lines --train.seed 0"
nice -n 5 taskset -c 0 $PY scripts/train.py $COMMON --train.run-dir $WORK/runs/sashimi \
  model:sashimi --model.d-model 32 --model.n-layers 2 > $WORK/runs/sashimi.log 2>&1 &
P1=$!
nice -n 5 taskset -c 1 $PY scripts/train.py $COMMON --train.run-dir $WORK/runs/flat \
  model:residual --model.d-model 126 --model.n-layers 8 --model.pool none > $WORK/runs/flat.log 2>&1 &
P2=$!
echo "$P1 $P2" > $WORK/runs/pids
T0=$(date +%s.%N); echo $T0 > $WORK/runs/t0
# watcher: wall-clock time of every metrics line as it appears
python3 - "$T0" "$WORK/runs" <<'PY' &
import sys, time, os
t0, R = float(sys.argv[1]), sys.argv[2]; seen = {"sashimi": 0, "flat": 0}
out = open(f"{R}/walltimes.tsv", "a")
while True:
    for k in seen:
        p = f"{R}/{k}/metrics.jsonl"
        if os.path.exists(p):
            lines = open(p).read().splitlines()
            for i in range(seen[k], len(lines)):
                out.write(f"{k}\t{time.time()-t0:.1f}\t{lines[i]}\n"); out.flush()
            seen[k] = len(lines)
    if os.path.exists(f"{R}/stop_watch"): break
    time.sleep(3)
PY
W=$!
sleep $WALL
kill -TERM $P1 $P2
wait $P1 $P2
echo "stopped at $(python3 -c "import time;print(time.time()-$T0)")" >> $WORK/runs/stopped
sleep 5; touch $WORK/runs/stop_watch; wait $W
