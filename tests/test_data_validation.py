"""Bad input is refused with a short message naming the file, the record and the problem.

Each case writes the bad fixture in the dataset's real release format and loads it through the
registered loader (:data:`ssm.data.DATASETS`), as training does; the shared split pass of
:mod:`ssm.data.validate` is tested on hand-made sources; the cache is tested against an in-place
edit that keeps the size and the mtime.
"""

import csv
import gzip
import os
import pickle
import types

import numpy as np
import pytest
from test_data_bidmc import write_ts
from test_data_cifar import write_cifar
from test_data_fsdd import write_fsdd
from test_data_informer import COLS, write_ett
from test_data_mnist import idx_bytes, write_mnist
from test_data_speech_commands import write_sc

from ssm.config import DataConfig
from ssm.data import DATASETS, fingerprint, validate
from ssm.data._files import CorruptFileError, write_wav
from ssm.data.base import ArraySource, DatasetInfo

MAX_MESSAGE = 400  # characters: one line a user can read


def load(name, root, split="train", **kw):
    return DATASETS[name].load(DataConfig(name=name, root=str(root), **kw), split)


def refused(name, root, split="train", **kw) -> str:
    with pytest.raises(CorruptFileError) as e:
        load(name, root, split, **kw)
    msg = str(e.value)
    assert len(msg) < MAX_MESSAGE and "\n" not in msg, msg
    return msg


# --------------------------------------------------------------------------- the cases


def test_mnist_label_11_names_file_and_record(tmp_path):
    write_mnist(tmp_path / "mnist")
    y = (np.arange(20) % 10).astype(np.uint8)
    y[3] = 11
    (tmp_path / "mnist" / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(y)))
    for split in ("train", "val", "test"):  # every split: the files are checked before any is served
        msg = refused("mnist", tmp_path, split)
        assert "train-labels-idx1-ubyte.gz, label record 3 (byte 11): label 11 is outside 0..9" in msg


def test_validation_split_too_small_or_switched_off(tmp_path, capsys):
    write_mnist(tmp_path / "mnist", n_train=4, n_test=3)
    with pytest.raises(ValueError, match=r"val_fraction = 0.1 of 4 training examples leaves 0 for validation.*--data.val-fraction 0"):
        load("mnist", tmp_path, "train")
    assert len(load("mnist", tmp_path, "train", val_fraction=0.0)) == 4
    assert len(load("mnist", tmp_path, "val", val_fraction=0.0)) == 0
    assert "[ssm] mnist: no validation split (data.val_fraction = 0); validation is skipped" in capsys.readouterr().err


def write_ett_cell(root, line: int, column: str, value: str):
    write_ett(root, n=14400)
    path = root / "informer" / "etth" / "ETTh1.csv"
    lines = path.read_text().split("\n")
    cells = lines[line - 1].split(",")
    cells[1 + COLS.index(column)] = value
    lines[line - 1] = ",".join(cells)
    path.write_text("\n".join(lines))


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-Infinity"])
def test_informer_non_finite_cell_names_row_and_column(tmp_path, value):
    write_ett_cell(tmp_path, 5000, "MUFL", value)
    msg = refused("etth1", tmp_path, seq_len=8, pred_len=4)
    assert "ETTh1.csv, line 5000, column 'MUFL'" in msg and "is not finite" in msg


def test_informer_empty_cell_names_row_and_column(tmp_path):
    write_ett_cell(tmp_path, 7, "OT", "")
    msg = refused("etth1", tmp_path, seq_len=8, pred_len=4)
    assert "ETTh1.csv, line 7, column 'OT': value '' is not a number" in msg


def test_fsdd_without_test_recordings_is_refused(tmp_path):
    write_fsdd(tmp_path, speakers=("theo",), indices=range(5, 8))  # index 0-4 is the test split
    msg = refused("fsdd", tmp_path, "train", seq_len=48)
    assert str(tmp_path / "fsdd" / "recordings") in msg and "the test split" in msg and "is empty" in msg


def test_wikitext_empty_test_file_is_refused(tmp_path):
    d = tmp_path / "wikitext-2"
    d.mkdir()
    for name, text in (("train", " the cat sat \n"), ("valid", " the cat \n"), ("test", "")):
        (d / f"wiki.{name}.tokens").write_text(text, encoding="utf-8")
    msg = refused("wt2", tmp_path, "train", seq_len=4)
    assert "wiki.test.tokens: the test split (no words; 0 line(s)) is empty" in msg
    (d / "wiki.test.tokens").write_text("\n \n\n", encoding="utf-8")  # blank lines only: no word either
    assert "wiki.test.tokens: the test split (no words; 3 line(s)) is empty" in refused("wt2", tmp_path, "test", seq_len=4)


def write_listops(root, train: str, val="( ( [MAX 2 ) ] )\t2\n", test="( ( [MIN 3 ) ] )\t3\n"):
    d = root / "listops"
    d.mkdir(parents=True, exist_ok=True)
    for split, body in (("train", train), ("val", val), ("test", test)):
        (d / f"basic_{split}.tsv").write_text("Source\tTarget\n" + body, encoding="utf-8", newline="")
    return d


def test_listops_empty_training_split_names_the_file(tmp_path):
    d = write_listops(tmp_path, "")
    msg = refused("listops", tmp_path, "val", seq_len=16)
    assert f"{d / 'basic_train.tsv'}: the split (no rows after the header) is empty" in msg
    (d / "basic_train.tsv").write_bytes(b"")  # not even a header
    assert "basic_train.tsv, line 1: expected the header 'Source<TAB>Target', got ''" in refused("listops", tmp_path, seq_len=16)


def test_listops_field_over_128_kib_is_read(tmp_path):
    expr = "( ( [MAX " + "( 7 ) " * 30_000 + "] ) )"  # 180 kB: over the csv module's 128 KiB field limit
    assert len(expr) > csv.field_size_limit()
    d = write_listops(tmp_path, f"{expr}\t7\n( ( [MIN 2 ) ] )\t2\n")
    with open(d / "basic_train.tsv", newline="") as f, pytest.raises(csv.Error, match="field larger than field limit"):
        list(csv.reader(f, delimiter="\t"))  # what the loader used to do
    src = load("listops", tmp_path, seq_len=16)
    vocab = DATASETS["listops"].info(DataConfig(name="listops", root=str(tmp_path), seq_len=16)).vocab
    assert [vocab[i] for i in src[0]["inputs"]] == ["[MAX"] + ["7"] * 14 + ["<eos>"]  # truncated as LRA
    assert int(src[0]["targets"]) == 7 and int(src[1]["targets"]) == 2


def test_bad_listops_row_message_is_cut(tmp_path):
    row = "( ( [MAX " + "( 7 ) " * 2000 + "] ) )"  # a 2,000-token row with a bad label
    write_listops(tmp_path, f"( ( [MIN 2 ) ] )\t2\n{row}\tseven\n")
    msg = refused("listops", tmp_path, seq_len=16)
    assert "basic_train.tsv, line 3: label 'seven' is not a digit 0-9" in msg
    write_listops(tmp_path, f"{row}\t7\t1\n")  # three fields: the row is quoted, cut
    msg = refused("listops", tmp_path, seq_len=16)
    assert "basic_train.tsv, line 2: 3 tab-separated fields" in msg and "characters)" in msg
    write_listops(tmp_path, f'"{row}"\t7\n')  # a stray quote is a token ListOps does not have
    msg = refused("listops", tmp_path, seq_len=16)
    assert "basic_train.tsv, line 2: token '\"(' is not ListOps" in msg and "characters)" in msg


def test_listops_not_utf8_names_the_byte(tmp_path):
    d = write_listops(tmp_path, "( ( [MAX 2 ) ] )\t2\n")
    (d / "basic_test.tsv").write_bytes(b"Source\tTarget\n( ( [MAX \xff ) ] )\t2\n")
    assert "basic_test.tsv: not UTF-8 text (byte 23)" in refused("listops", tmp_path, "train", seq_len=16)


def test_cache_is_rebuilt_after_same_size_same_mtime_edit(tmp_path):
    d = write_listops(tmp_path, "( ( [MAX 2 ) 9 ) ] )\t9\n")
    assert int(load("listops", tmp_path, seq_len=16)[0]["targets"]) == 9
    path = d / "basic_train.tsv"
    st = os.stat(path)
    with open(path, "r+b") as f:  # in place: same inode, same size
        f.seek(len("Source\tTarget\n( ( [MAX 2 ) 9 ) ] )\t"))
        f.write(b"2")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    st2 = os.stat(path)
    assert (st2.st_size, st2.st_mtime_ns, st2.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)
    assert int(load("listops", tmp_path, seq_len=16)[0]["targets"]) == 2


def test_pathfinder_cache_sees_an_edited_image(tmp_path):
    from PIL import Image

    d = tmp_path / "pathfinder" / "pathfinder32" / "curv_baseline"
    (d / "imgs" / "0").mkdir(parents=True)
    (d / "metadata").mkdir()
    for i in range(10):
        Image.fromarray(np.full((32, 32), i, np.uint8), "L").save(d / "imgs" / "0" / f"sample_{i}.png")
    (d / "metadata" / "0.npy").write_text("".join(f"imgs/0 sample_{i}.png {i} {i % 2}\n" for i in range(10)))
    cfg = DataConfig(name="pathfinder", root=str(tmp_path), resolution=32, contour=6)
    before = DATASETS["pathfinder"]._arrays(tmp_path, 32, 6)["pixels"][4]
    path = d / "imgs" / "0" / "sample_4.png"
    st = os.stat(path)
    Image.fromarray(np.full((32, 32), 200, np.uint8), "L").save(path)  # same size: a constant image
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size
    after = DATASETS["pathfinder"]._arrays(tmp_path, 32, 6)["pixels"][4]
    assert before[0] == 4 and after[0] == 200
    assert len(DATASETS["pathfinder"].load(cfg, "test")) == 1


def test_settled_hash_is_reused_and_a_changed_file_rehashed(tmp_path, monkeypatch):
    (tmp_path / "src").mkdir()
    f = tmp_path / "src" / "a.bin"
    f.write_bytes(b"abc")
    calls = []
    real_hash = fingerprint.content_hash
    monkeypatch.setattr(fingerprint, "content_hash", lambda p: calls.append(p) or real_hash(p))
    now = __import__("time").time()
    monkeypatch.setattr(fingerprint.time, "time", lambda: now + 10 * fingerprint.RACY_S)  # hashed long after ctime
    first = fingerprint.fingerprints([f], tmp_path)
    assert fingerprint.fingerprints([f], tmp_path) == first and len(calls) == 1  # settled: remembered
    fingerprint._memo.clear()  # a new process reads the memo file
    assert fingerprint.fingerprints([tmp_path / "src"], tmp_path) == first and len(calls) == 1  # a folder: its files
    f.write_bytes(b"abd")
    os.utime(f, ns=(0, 10**9))
    assert fingerprint.fingerprints([f], tmp_path)[0][2] != first[0][2] and len(calls) == 2


def test_racy_hash_is_recomputed(tmp_path, monkeypatch):
    f = tmp_path / "a.bin"
    f.write_bytes(b"abc")
    calls = []
    real_hash = fingerprint.content_hash
    monkeypatch.setattr(fingerprint, "content_hash", lambda p: calls.append(p) or real_hash(p))
    # The clock reads the file's own ctime, so the hash is taken "at once" however slow this machine is.
    st = os.stat(f)
    monkeypatch.setattr(fingerprint.time, "time", lambda: max(st.st_mtime_ns, st.st_ctime_ns) / 1e9)
    fingerprint.fingerprints([f], tmp_path)
    fingerprint.fingerprints([f], tmp_path)  # hashed within RACY_S of its ctime: not trusted yet
    assert len(calls) == 2


# --------------------------------------------------------------------------- the other loaders


def test_cifar_label_out_of_range(tmp_path):
    write_cifar(tmp_path, n=6)
    path = tmp_path / "cifar" / "cifar-10-batches-py" / "data_batch_2"
    with open(path, "rb") as fh:
        d = pickle.load(fh, encoding="bytes")
    d[b"labels"][4] = 10
    with open(path, "wb") as fh:
        pickle.dump(d, fh, protocol=2)
    assert "data_batch_2, image 4 of the batch: label 10 is outside 0..9" in refused("cifar10", tmp_path, "test")


def test_speech_commands_lists(tmp_path):
    from ssm.data.speech_commands import SUBSET_CLASSES

    d, _ = write_sc(tmp_path, ("bed", "cat") + tuple(SUBSET_CLASSES), per_class=2, length=40)
    (d / "validation_list.txt").write_text("bed/00000000_nohash_0.wav\n")
    (d / "testing_list.txt").write_bytes(b"cat/00000000_nohash_0.wav\ncat/\xe9.wav\n")
    import ssm.data.speech_commands as sc

    monkey = sc.ALL_CLASSES
    sc.ALL_CLASSES = ["bed", "cat"] + list(SUBSET_CLASSES)  # a small sc35: the lists are what is tested
    try:
        assert "testing_list.txt: not UTF-8 text (byte 30)" in refused("sc35", tmp_path)
        (d / "testing_list.txt").write_text("cat/00000000_nohash_0.wav\n\ncat/gone.wav\n")
        assert "testing_list.txt, line 3: lists 'cat/gone.wav', which is not in" in refused("sc35", tmp_path)
        (d / "testing_list.txt").write_text("\n")
        assert "testing_list.txt: the clip list is empty" in refused("sc35", tmp_path)
    finally:
        sc.ALL_CLASSES = monkey


def test_sc09_empty_test_list(tmp_path):
    from ssm.data.audio import DIGITS

    d = tmp_path / "sc09"
    for c in DIGITS:
        (d / c).mkdir(parents=True)
        write_wav(d / c / "a_nohash_0.wav", np.arange(30, dtype=np.int16) * 100, 16000)
    (d / "validation_list.txt").write_text("one/a_nohash_0.wav\n")
    (d / "testing_list.txt").write_text("")
    assert "testing_list.txt: the test list is empty" in refused("sc09", tmp_path, seq_len=40)


def test_audio_folder_too_small_for_its_splits(tmp_path):
    d = tmp_path / "beethoven"
    d.mkdir()
    for k in range(3):  # 3 files: 88 % / 6 % / 6 % leaves val and test without a file
        write_wav(d / f"{k}.wav", np.arange(64, dtype=np.int16) * 100, 16000)
    assert f"{d}: the val split is empty" in refused("beethoven", tmp_path, "val", seq_len=16)


def test_bidmc_non_finite_values(tmp_path):
    rng = np.random.default_rng(0)
    x, y = np.round(rng.normal(size=(6, 5, 2)), 4), np.round(rng.uniform(60, 100, 6), 3)
    d = tmp_path / "bidmc" / "HR"
    d.mkdir(parents=True)
    x[2, 3, 1] = np.nan
    write_ts(d / "BIDMC32HR_TRAIN.ts", x, y)
    x[2, 3, 1] = 0.0
    write_ts(d / "BIDMC32HR_TEST.ts", x, y)
    assert "BIDMC32HR_TRAIN.ts, line 13 (series 2): value nan is not finite" in refused("bidmc", tmp_path, target="HR")
    npy = tmp_path / "bidmc" / "RR" / "reshuffle"
    npy.mkdir(parents=True)
    for s in ("train", "valid", "test"):
        np.save(npy / f"{s}x.npy", np.zeros((3, 4000, 2)))
        np.save(npy / f"{s}y.npy", np.asarray([1.0, np.inf, 2.0]) if s == "valid" else np.ones(3))
    assert "validy.npy, record 1: value inf is not finite" in refused("bidmc", tmp_path, target="RR")


def test_aan_label_and_pathfinder_metadata(tmp_path):
    d = tmp_path / "aan"
    d.mkdir()
    for part in ("train", "eval", "test"):
        (d / f"new_aan_pairs.{part}.tsv").write_text("1.0\ta\tb\txy\tyz\n" + ("2.0\ta\tb\tx\ty\n" if part == "eval" else ""))
    assert "new_aan_pairs.eval.tsv: line 2: label '2.0' is not 0 or 1" in refused("aan", tmp_path, seq_len=8)
    m = tmp_path / "pathfinder" / "pathfinder32" / "curv_baseline" / "metadata"
    m.mkdir(parents=True)
    (m / "0.npy").write_text("imgs/0 sample_0.png 0 2 " + "1.0 " * 500 + "\n")
    msg = refused("pathfinder", tmp_path, resolution=32, contour=6)
    assert "0.npy, line 1: expected '<folder> <file> <n> <label 0/1> ...'" in msg and "characters)" in msg


# --------------------------------------------------------------------------- the shared split pass

INFO = DatasetInfo(task="classification", d_input=5, d_output=3, seq_len=4, tokens=True)


def check(info=INFO, split="train", cfg=None, **arrays):
    validate.check_split("toy", split, ArraySource(**arrays), info, cfg or types.SimpleNamespace(root="/data"))


def test_split_pass_accepts_good_data():
    check(inputs=np.array([[0, 4, 1, 0]], np.int32), targets=np.array([2], np.int32), lengths=np.array([3]))
    f = DatasetInfo(task="regression", d_input=2, d_output=1, seq_len=4)
    check(f, inputs=np.zeros((2, 4, 2), np.float32), targets=np.ones((2, 1), np.float32))


@pytest.mark.parametrize(
    "arrays,info,expected",
    [
        (dict(inputs=np.zeros((3, 4), np.int32), targets=np.array([0, 3, 1])), INFO,
         "example 1 (targets): label 3 is outside 0..2"),
        (dict(inputs=np.array([[0, 1], [5, 0]], np.int32), targets=np.array([0, 1])), INFO,
         "example 1 (inputs): token id 5 is outside 0..4"),
        (dict(inputs=np.zeros((2, 5), np.int32), targets=np.array([0, 1])), INFO,
         "length 5 exceeds seq_len 4"),
        (dict(inputs=np.zeros((2, 4), np.int32), targets=np.array([0, 1]), lengths=np.array([4, 0])), INFO,
         "example 1 (lengths): length 0 is outside 1..4"),
        (dict(inputs=np.zeros((2, 4, 1), np.float32), targets=np.array([[0.0], [np.inf]])),
         DatasetInfo(task="regression", d_input=1, d_output=1, seq_len=4), "example 1 (targets): holds a non-finite"),
        (dict(inputs=np.full((2, 4, 1), np.nan, np.float32), targets=np.array([0, 1])),
         DatasetInfo(task="classification", d_input=1, d_output=2, seq_len=4), "example 0 (inputs): holds a non-finite value (2 of 2"),
        (dict(inputs=np.zeros((1, 4), np.int32), targets=np.array([[1, 9, 1, 1]])),
         DatasetInfo(task="lm", d_input=5, d_output=5, seq_len=4, tokens=True), "target id 9 is outside 0..4"),
    ],
)  # fmt: skip
def test_split_pass_refuses(arrays, info, expected):
    with pytest.raises(CorruptFileError, match="the toy train split") as e:
        check(info, **arrays)
    assert expected in str(e.value) and "/data" in str(e.value)


def test_empty_split_refused_unless_asked_for(capsys):
    empty = dict(inputs=np.zeros((0, 4), np.int32), targets=np.zeros(0, np.int32))
    with pytest.raises(CorruptFileError, match="the toy test split .*holds no examples"):
        check(split="test", **empty)
    check(split="val", cfg=types.SimpleNamespace(root="/data", val_fraction=0.0), **empty)
    assert "no validation split (data.val_fraction = 0)" in capsys.readouterr().err


def test_every_registered_loader_is_checked():
    assert all(getattr(m.load, "_validated", False) for m in DATASETS.values())
    bad = types.SimpleNamespace(
        info=lambda cfg: INFO, load=lambda cfg, split: ArraySource(inputs=np.zeros((1, 4), np.int32), targets=np.array([7]))
    )
    validate.install("bad", bad)
    with pytest.raises(CorruptFileError, match="the bad test split.*label 7 is outside 0..2"):
        bad.load(types.SimpleNamespace(root="/r"), "test")


def test_optional_split_is_announced_once(tmp_path, capsys):
    from test_data_imdb import write_acl

    write_acl(tmp_path)
    m = types.SimpleNamespace(info=DATASETS["imdb"].info, load=DATASETS["imdb"].load.__wrapped__,
                              SPLIT_NOTES=DATASETS["imdb"].SPLIT_NOTES)  # a fresh install: the note not yet given
    validate.install("imdb", m)
    cfg = DataConfig(name="imdb", root=str(tmp_path), seq_len=16)
    assert len(m.load(cfg, "val")) == len(m.load(cfg, "test"))
    m.load(cfg, "val")
    err = capsys.readouterr().err
    assert err.count("imdb val: the release has no validation split; the test split is used for validation") == 1


def test_cut_keeps_messages_short():
    assert validate.cut("abc") == "'abc'"
    long = validate.cut("x" * 5000)
    assert len(long) < 120 and "5,000 characters" in long
