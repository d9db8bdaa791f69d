"""Curves of the two FSDD runs: bits/byte (= nats / ln 2 per sample) vs step and vs wall time."""
import json, math, sys
import matplotlib; matplotlib.use("Agg")
import matplotlib.pyplot as plt
rows = [l.rstrip("\n").split("\t", 2) for l in open(sys.argv[1])]
out, finals = sys.argv[2], json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
runs = {"sashimi": ("SaShiMi U-Net (d_model 32, 2 layers/stage, pool 4,4): 390,808 params", "C0"),
        "flat": ("flat S4 stack (d_model 126, 8 blocks): 391,132 params", "C1")}
fig, ax = plt.subplots(1, 3, figsize=(16, 4.4))
for k, (label, col) in runs.items():
    ev = [(float(t), json.loads(e)) for r, t, e in rows if r == k]
    tr = [(e["step"], t, e["loss"] / math.log(2)) for t, e in ev if e.get("split") == "train"]
    va = [(e["step"], t, e["loss"] / math.log(2)) for t, e in ev if e.get("split") == "val"]
    ax[0].plot([s for s, _, _ in tr], [b for _, _, b in tr], color=col, label=label)
    ax[1].plot([s for s, _, _ in va], [b for _, _, b in va], "o-", color=col, ms=4, label=label)
    ax[2].plot([t / 60 for _, t, _ in tr], [b for _, _, b in tr], color=col, alpha=.5, label=f"{k} train")
    ax[2].plot([t / 60 for _, t, _ in va], [b for _, _, b in va], "o-", color=col, ms=4, label=f"{k} val (50 clips)")
    if k in finals:
        ax[2].axhline(finals[k], color=col, ls=":", label=f"{k} final, full val: {finals[k]:.3f}")
ax[0].set(xlabel="step", ylabel="train bits/byte (batch of 8 clips)")
ax[1].set(xlabel="step", ylabel="val bits/byte (first 50 val clips)")
ax[2].set(xlabel="wall time since launch (min; one CPU core each, machine shared)", ylabel="bits/byte")
for a in ax: a.grid(alpha=.3)
ax[0].legend(fontsize=8); ax[2].legend(fontsize=7)
fig.suptitle("FSDD spoken digits as 8-bit mu-law audio (4000 samples = 0.5 s at 8 kHz): SaShiMi vs flat S4 stack, equal parameters and wall time")
fig.tight_layout(); fig.savefig(out, dpi=100)
