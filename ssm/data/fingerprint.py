"""Content fingerprints of a dataset's source files, for the key of the preprocessed-array cache.

Why the bytes and not ``(size, mtime)``: an edit in place that keeps the size and restores the
mtime (``touch -r``, ``os.utime``, ``rsync -t``, an editor or tool that preserves times) leaves
both unchanged, and even without that, file-system timestamps advance in coarse ticks (a kernel
tick of a few ms; 1–2 s on some file systems), so two writes within one tick share an mtime. A
hash of the content catches every edit.

Hashing every start would cost seconds on the big sources (WikiText-103 ≈ 0.5 GB, Speech Commands
≈ 2.3 GB in 105k clips), so a file's hash is remembered in ``<cache>/hashes-<name>.json`` (one per
cached dataset) under its ``(size, mtime_ns, ctime_ns, inode, device)``. The ctime cannot be set
from user space: any write or ``utime`` moves it to "now". A remembered hash is therefore trusted only if it was computed at
least :data:`RACY_S` seconds after the file's last mtime/ctime: a later edit then necessarily gives
a later ctime, a different key and a fresh hash. A hash taken while the file was that fresh (an
edit in the same tick would be invisible) is recomputed on the next use. This is the rule git uses
for its index ("racy git", git's Documentation/technical/racy-git.txt).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

RACY_S = 2.0  # seconds: more than any file-system timestamp tick (FAT: 2 s)
_memo: dict[str, tuple[int, dict]] = {}  # cache folder -> (memo file mtime_ns, entries)


def content_hash(path: Path) -> str:
    """SHA-1 of the file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def expand(sources: Sequence[Path]) -> list[Path]:
    """Files stand for themselves; a folder for the regular files directly in it, sorted by name
    (the listing then changes the key when a file is added, removed or renamed)."""
    out: list[Path] = []
    for s in map(Path, sources):
        if s.is_dir():
            out += sorted(p for p in s.iterdir() if p.is_file())
        else:
            out.append(s)
    return out


def _load_memo(f: Path) -> dict:
    try:
        stamp = f.stat().st_mtime_ns
    except OSError:
        return {}
    key = str(f)
    if key in _memo and _memo[key][0] == stamp:
        return _memo[key][1]
    try:
        entries = json.loads(f.read_text())
        entries = entries if isinstance(entries, dict) else {}
    except (OSError, ValueError):  # a damaged memo only costs a rehash
        entries = {}
    _memo[key] = (stamp, entries)
    return entries


def _save_memo(memo: Path, entries: dict) -> None:
    try:
        fd, tmp = tempfile.mkstemp(dir=memo.parent, suffix=".tmp.json")
        with os.fdopen(fd, "w") as f:
            json.dump(entries, f)
        os.replace(tmp, memo)
        _memo[str(memo)] = (memo.stat().st_mtime_ns, entries)
    except OSError:  # read-only or full cache folder: hashes are recomputed next time
        pass


def fingerprints(sources: Sequence[Path], cache_dir: Path, name: str = "data") -> list[tuple[str, int, str]]:
    """``(path, size, content hash)`` of every source file, hashes remembered (in
    ``<cache_dir>/hashes-<name>.json``) as described above."""
    memo = cache_dir / f"hashes-{name}.json"
    entries = dict(_load_memo(memo))
    changed = False
    out = []
    for p in expand(sources):
        st = os.stat(p)
        name = str(p.resolve())
        key = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]
        e = entries.get(name)
        settled = e is not None and e["at"] - max(st.st_mtime_ns, st.st_ctime_ns) / 1e9 > RACY_S
        if e is None or e["key"] != key or not settled:
            at = time.time()
            e = {"key": key, "hash": content_hash(p), "at": at}
            entries[name] = e
            changed = True
        out.append((name, st.st_size, e["hash"]))
    if changed:
        _save_memo(memo, entries)
    return out
