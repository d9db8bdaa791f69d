"""Training progress: a tqdm bar on a terminal, plain periodic lines otherwise (CI logs)."""

from __future__ import annotations

import sys
import time


def _fmt_time(seconds: float) -> str:
    s = int(max(seconds, 0))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    """``update(step, loss=.., lr=..)`` at each log point: steps/s and examples/s over the last
    interval, ETA to ``total``."""

    def __init__(self, total: int, start: int, batch_size: int, mode: str = "auto", enabled: bool = True):
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "lines"
        self.mode = mode if enabled else "none"
        self.total, self.batch = total, batch_size
        self.last_step, self.last_time = start, time.perf_counter()
        self.bar = None
        if self.mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, dynamic_ncols=True)

    def reset_clock(self, step: int) -> None:
        """Restart the rate measurement (e.g. after compilation or evaluation)."""
        self.last_step, self.last_time = step, time.perf_counter()

    def update(self, step: int, **metrics: float) -> dict[str, float]:
        now = time.perf_counter()
        dt = max(now - self.last_time, 1e-9)
        rate = (step - self.last_step) / dt
        eta = (self.total - step) / rate if rate > 0 else float("inf")
        info = {"steps_per_s": rate, "examples_per_s": rate * self.batch}
        self.last_step, self.last_time = step, now
        text = " ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        if self.bar is not None:
            self.bar.n = step
            self.bar.set_postfix_str(f"{text} | {rate * self.batch:.0f} ex/s")
        elif self.mode == "lines":
            eta_s = _fmt_time(eta) if eta != float("inf") else "?"
            print(f"step {step}/{self.total} {text} | {rate:.2f} steps/s {rate * self.batch:.0f} ex/s | ETA {eta_s}",
                  flush=True)  # fmt: skip
        return info

    def write(self, text: str) -> None:
        if self.mode == "none":
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
