"""Lay the Free Spoken Digit Dataset out as an SC09-style folder for the ``sc09`` audio loader.

    python make_fsdd_folder.py FSDD_RECORDINGS_DIR OUT_ROOT      # then --data.root OUT_ROOT

Writes ``OUT_ROOT/sc09/{zero..nine}/*.wav`` plus ``validation_list.txt`` / ``testing_list.txt``.
The samples are copied unchanged (8 kHz mono int16, Jakobovski/free-spoken-digit-dataset); only the
header's rate field says 16000, because ``ssm.data.audio`` accepts 16 kHz files only (the loader never
resamples, so the model sees exactly the 8 kHz sample sequence). Splits by the FSDD file index
``{digit}_{speaker}_{index}.wav``: test = 0-4 (FSDD's official test split), val = 5-9, train = 10-49.
"""
import glob
import os
import sys
import wave

src, dst = sys.argv[1], sys.argv[2]
DIGITS = "zero one two three four five six seven eight nine".split()
lists = {"val": [], "test": []}
for f in sorted(glob.glob(os.path.join(src, "*.wav"))):
    name = os.path.basename(f)
    digit, _speaker, index = name[:-4].split("_")
    with wave.open(f) as w:
        if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (8000, 1, 2):
            sys.exit(f"{f}: expected 8 kHz mono 16-bit PCM (the FSDD release format)")
        frames = w.readframes(w.getnframes())
    folder = os.path.join(dst, "sc09", DIGITS[int(digit)])
    os.makedirs(folder, exist_ok=True)
    with wave.open(os.path.join(folder, name), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000), w.writeframes(frames)
    if int(index) < 10:
        lists["test" if int(index) < 5 else "val"].append(f"{DIGITS[int(digit)]}/{name}")
for split, fname in (("val", "validation_list.txt"), ("test", "testing_list.txt")):
    with open(os.path.join(dst, "sc09", fname), "w") as fh:
        fh.write("\n".join(lists[split]) + "\n")
print({k: len(v) for k, v in lists.items()})
