#!/usr/bin/env python
"""Sample from an autoregressive run: ``python scripts/generate.py RUN_DIR [--n 16 --length L --prompt-len P
--temperature 1.0 --top-p 1.0 --seed 0 --out DIR]``.

The prompt (the first ``P`` tokens of ``--n`` examples of ``--split``; none when ``P = 0``) is prefilled in one
parallel call, then every new token is one recurrent step (``ssm.generate``). Writes into ``--out``
(default ``RUN_DIR/samples``) ``tokens.npy`` and, by dataset:

- audio (sc09, youtubemix, beethoven): ``sample_000.wav`` ... (16 kHz, 16-bit PCM; mu-law or linear 8-bit decoded);
- images (mnist_gen): ``samples.png``, a grid of the samples (prompt rows included);
- language models with a vocabulary: ``samples.txt`` (the prompt, then ``||``, then the continuation).

Prints a JSON summary (files, tokens/s) on stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import wave

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

AUDIO_RATE = 16000


def write_wav(path: str, levels: np.ndarray, quantization: str) -> None:
    """8-bit levels (0..255) -> 16-bit PCM WAV at 16 kHz, decoded as mu-law or linear (128 = silence)."""
    from ssm.data.audio import mu_law_decode

    q = np.asarray(levels, np.int64)
    if quantization == "mulaw":
        amp = mu_law_decode(q)
    elif quantization == "linear":
        amp = q / 128.0 - 1.0
    else:
        raise ValueError(f"unknown audio quantization {quantization!r}: expected 'mulaw' or 'linear'")
    pcm = np.clip(np.round(amp * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(AUDIO_RATE)
        w.writeframes(pcm.tobytes())


def write_image_grid(path: str, tokens: np.ndarray, shape: tuple[int, int], pad: int = 2) -> None:
    """``(n, h·w)`` pixel tokens (0..255) -> one PNG grid (about square; ``pad`` pixels of mid-grey between)."""
    from PIL import Image

    n = len(tokens)
    h, w = shape
    if tokens.shape[1] < h * w:  # a shorter sample: the rest of the image stays black
        tokens = np.pad(tokens, ((0, 0), (0, h * w - tokens.shape[1])))
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad), 128, np.uint8)
    for i, t in enumerate(tokens):
        r, c = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y : y + h, x : x + w] = np.clip(t[: h * w], 0, 255).reshape(h, w)
    Image.fromarray(grid, mode="L").save(path)


def write_text(path: str, tokens: np.ndarray, vocab: list[str], prompt_len: int) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for i, t in enumerate(tokens):
            words = [vocab[int(k)] for k in t]
            f.write(f"=== sample {i} ===\n" + " ".join(words[:prompt_len]) + " || " + " ".join(words[prompt_len:]) + "\n\n")


def start_token_for(name: str) -> int | None:
    """The first input of every training sequence of a generation dataset (its inputs are the targets shifted
    right): 128 (the zero level) for SaShiMi audio, 0 for MNIST pixels; None for language models."""
    from ssm.data.audio import SPECS

    if name in SPECS:
        return 128
    if name == "mnist_gen":
        from ssm.data.mnist_gen import START_TOKEN

        return START_TOKEN
    return None


def run(
    run_dir: str,
    *,
    n: int = 16,
    length: int | None = None,
    prompt_len: int = 0,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    out: str | None = None,
    split: str = "test",
    step: int | None = None,
    start_token: int | None = None,
    rate: float = 1.0,
    data_root: str | None = None,
) -> dict:
    import jax

    import ssm
    from ssm.data import get_dataset
    from ssm.data.audio import SPECS

    model, cfg = ssm.load(run_dir, step, data_root=data_root)
    dataset = get_dataset(cfg.data.name)
    info = dataset.info(cfg.data)
    if info.task not in ("lm", "generation"):
        raise ValueError(f"{run_dir} is a {info.task!r} run; generation needs an 'lm' or 'generation' run")
    if n < 1:
        raise ValueError(f"--n must be >= 1 (got {n})")
    if prompt_len < 0:
        raise ValueError(f"--prompt-len must be >= 0 (got {prompt_len})")
    length = info.seq_len if length is None else length
    start = start_token_for(cfg.data.name) if start_token is None else start_token
    if prompt_len > 0:
        src = dataset.load(cfg.data, split)
        if len(src) < n:
            raise ValueError(f"--n {n}: the {split} split has only {len(src)} examples to take prompts from")
        seqs = src.arrays["targets"] if start is not None else src.arrays["inputs"]
        if seqs.ndim != 2 or seqs.shape[1] < prompt_len:
            raise ValueError(f"--prompt-len {prompt_len} is longer than the {split} sequences ({seqs.shape[1:]})")
        prompt = np.asarray(seqs[:n, :prompt_len], np.int32)
    else:
        if start is None:
            raise ValueError(f"{cfg.data.name} has no start token: pass --prompt-len >= 1 (or --start-token)")
        prompt = np.zeros((n, 0), np.int32)
    t0 = time.perf_counter()
    tokens = model.generate(prompt, length=length, key=jax.random.PRNGKey(seed), temperature=temperature,
                            top_p=top_p, start_token=start, rate=rate)  # fmt: skip
    tokens = np.asarray(jax.device_get(tokens))
    seconds = time.perf_counter() - t0
    out = os.path.join(run_dir, "samples") if out is None else out
    os.makedirs(out, exist_ok=True)
    files = [os.path.join(out, "tokens.npy")]
    np.save(files[0], tokens)
    if cfg.data.name in SPECS:
        for i, t in enumerate(tokens):
            files.append(os.path.join(out, f"sample_{i:03d}.wav"))
            write_wav(files[-1], t, SPECS[cfg.data.name][1])
    elif getattr(dataset, "IMAGE_SHAPE", None) is not None:
        files.append(os.path.join(out, "samples.png"))
        write_image_grid(files[-1], tokens, dataset.IMAGE_SHAPE)
    elif info.vocab is not None:
        files.append(os.path.join(out, "samples.txt"))
        write_text(files[-1], tokens, info.vocab, prompt_len)
    return {"run_dir": run_dir, "out": out, "files": files, "n": n, "length": length, "prompt_len": prompt_len,
            "temperature": temperature, "top_p": top_p, "seconds": seconds,
            "tokens_per_s": n * (length - prompt_len) / seconds}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("--n", type=int, default=16, help="number of samples")
    p.add_argument("--length", type=int, default=None, help="tokens per sample, prompt included (default: seq_len)")
    p.add_argument("--prompt-len", type=int, default=0, help="prompt tokens taken from --split examples")
    p.add_argument("--temperature", type=float, default=1.0, help="0: greedy")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1: off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output directory (default RUN_DIR/samples)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: the best checkpoint)")
    p.add_argument("--start-token", type=int, default=None, help="first model input (default: by dataset)")
    p.add_argument("--rate", type=float, default=1.0, help="relative sampling rate (Δ multiplied by rate)")
    p.add_argument("--data-root", default=None, help="override data.root of the saved config")
    a = p.parse_args(argv)
    try:
        res = run(a.run_dir, n=a.n, length=a.length, prompt_len=a.prompt_len, temperature=a.temperature,
                  top_p=a.top_p, seed=a.seed, out=a.out, split=a.split, step=a.step, start_token=a.start_token,
                  rate=a.rate, data_root=a.data_root)  # fmt: skip
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    import host_memory  # scripts/host_memory.py: glibc's malloc in the SSM_MALLOC mode

    host_memory.reexec_with_tuned_malloc()
    sys.exit(main())
