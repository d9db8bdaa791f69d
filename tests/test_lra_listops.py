"""LRA ListOps: the offline generator (ssm.data.lra_gen.listops) and the reader (ssm.data.listops).

Labels are checked with an evaluator written here from the task's definition (a token stack
machine, not the generator's pair folding); the length and label distributions are compared,
as statistics, with a sampler transcribed here from the LRA generator's description.
"""

from __future__ import annotations

import random
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import configs
from ssm.config import DataConfig
from ssm.data import DATASETS
from ssm.data._files import DatasetNotFoundError
from ssm.data.lra_gen import listops as gen

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- independent references


def evaluate(source: str) -> int:
    """Value of a serialized ListOps expression: a stack of open operator frames."""
    stack: list[tuple[str, list[int]]] = []
    result = None
    for tok in source.replace("(", " ").replace(")", " ").split():
        if tok.startswith("["):
            stack.append((tok, []))
            continue
        if tok == "]":
            op, args = stack.pop()
            assert len(args) >= 2, "every operator takes at least two arguments"
            value = {
                "[MIN": min,
                "[MAX": max,
                "[MED": lambda a: int(statistics.median(a)),
                "[SM": lambda a: sum(a) % 10,
            }[op](args)
        else:
            value = int(tok)
            assert 0 <= value <= 9
        if stack:
            stack[-1][1].append(value)
        else:
            assert result is None, "one expression per row"
            result = value
    assert not stack and result is not None
    return result


def reference_sample(rng: random.Random, n: int) -> tuple[list[int], list[int]]:
    """(lengths, labels) of ``n`` accepted trees, straight from the LRA generator's description:
    leaf with probability 0.75 below depth 10, else 2–10 children then an operator; keep
    500 < length < 2000."""
    ops = ["[MIN", "[MAX", "[MED", "[SM"]

    def node(depth: int) -> tuple[int, int]:  # (length, value)
        if (rng.random() if depth < 10 else 1.0) > 0.25:
            return 1, rng.choice(range(10))
        kids = [node(depth + 1) for _ in range(rng.randint(2, 10))]
        op = rng.choice(ops)
        vals = [v for _, v in kids]
        value = {"[MIN": min(vals), "[MAX": max(vals), "[MED": int(np.median(vals)), "[SM": sum(vals) % 10}[op]
        return 2 + sum(n for n, _ in kids), value

    lengths, labels = [], []
    while len(lengths) < n:
        length, value = node(1)
        if 500 < length < 2000:
            lengths.append(length)
            labels.append(value)
    return lengths, labels


# ---------------------------------------------------------------- generator


@pytest.fixture(scope="module")
def rows() -> list[tuple[str, int]]:
    params = gen.ListOpsParams(num_train=1200, num_val=0, num_test=0)
    return gen.generate(params, seed=7, workers=1, progress=False)


def test_every_label_matches_an_independent_evaluator(rows):
    assert len(rows) == 1200
    for src, label in rows:
        assert evaluate(src) == label


def test_serialization_lengths_and_dedup(rows):
    sources = [s for s, _ in rows]
    assert len(set(sources)) == len(sources)
    for src in sources:
        toks = src.split()
        core = [t for t in toks if t not in "()"]
        # every pair of the left-nested tree is parenthesised: T tokens → T − 1 pairs
        assert toks.count("(") == toks.count(")") == len(core) - 1
        assert 500 < len(core) < 2000
        assert set(core) <= {"[MIN", "[MAX", "[MED", "[SM", "]"} | {str(d) for d in range(10)}
        assert toks[0] == "(" and toks[-1] == ")" and toks[-2] == "]"


def test_length_and_label_distributions_match_the_reference_algorithm(rows):
    ours_len = [sum(t not in "()" for t in s.split()) for s, _ in rows]
    ours_lab = [lab for _, lab in rows]
    ref_len, ref_lab = reference_sample(random.Random(12345), 1200)
    assert stats.ks_2samp(ours_len, ref_len).pvalue > 1e-3
    table = np.array([np.bincount(ours_lab, minlength=10), np.bincount(ref_lab, minlength=10)])
    assert stats.chi2_contingency(table).pvalue > 1e-3
    # and the gross shape: mean length ~1,000 tokens, every class present
    assert 800 < np.mean(ours_len) < 1300 and (table > 0).all()


def test_draw_order_is_the_lra_one():
    """A chunk's first tree is exactly what LRA's generate_tree gives on the same Random state."""
    rng = gen._chunk_rng(3, 0)
    twin = random.Random()
    twin.setstate(rng.getstate())

    def lra_tree(depth):  # LRA's generate_tree, transcribed
        r = twin.random() if depth < 10 else 1
        if r > 0.25:
            return twin.choice(range(10)), 1
        length, values = 2, []
        for _ in range(twin.randint(2, 10)):
            t, n = lra_tree(depth + 1)
            values.append(t)
            length += n
        t = (twin.choice(["[MIN", "[MAX", "[MED", "[SM"]), values[0])
        for v in values[1:]:
            t = (t, v)
        return (t, "]"), length

    for _ in range(50):
        assert gen.generate_tree(rng, 1, 10, 10) == lra_tree(1)


def test_same_seed_same_bytes_any_worker_count(tmp_path):
    params = gen.ListOpsParams(num_train=30, num_val=5, num_test=5)
    a = gen.write_release(tmp_path / "a", params, seed=1, workers=1, progress=False)
    b = gen.write_release(tmp_path / "b", params, seed=1, workers=2, progress=False)
    c = gen.write_release(tmp_path / "c", params, seed=2, workers=1, progress=False)
    for split in ("train", "val", "test"):
        assert a[split].read_bytes() == b[split].read_bytes()
        assert a[split].read_bytes() != c[split].read_bytes()
    text = a["train"].read_bytes()
    assert text.startswith(b"Source\tTarget\r\n") and text.count(b"\r\n") == 31
    # the splits are disjoint
    rows = {s: set(a[s].read_text().splitlines()[1:]) for s in a}
    assert not (rows["train"] & rows["val"]) and not (rows["train"] & rows["test"]) and not (rows["val"] & rows["test"])


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match="num_train"):
        gen.ListOpsParams(num_train=-1)
    with pytest.raises(ValueError, match="length"):
        gen.ListOpsParams(min_length=10, max_length=11)


# ---------------------------------------------------------------- reader


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lra")
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "prepare_data.py"), "listops", "--out", str(root / "listops"),
         "--train", "60", "--val", "10", "--test", "10", "--seed", "3", "--workers", "1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return root


def test_reader_parses_generated_data(mini):
    cfg = DataConfig(name="listops", root=str(mini))
    mod = DATASETS["listops"]
    info = mod.info(cfg)
    assert info.task == "classification" and info.tokens and info.d_output == 10 and info.seq_len == 2048
    vocab = info.vocab
    assert vocab[:3] == ["<pad>", "<unk>", "<eos>"] and info.d_input == len(vocab) == 18
    assert set(vocab[3:]) == {"X", "[MIN", "[MAX", "[MED", "[SM"} | {str(d) for d in range(10)}
    for split, n in (("train", 60), ("val", 10), ("test", 10)):
        src = mod.load(cfg, split)
        assert len(src) == n
        lines = (mini / "listops" / f"basic_{split}.tsv").read_text().splitlines()[1:]
        for i in (0, n - 1):
            ex = src[i]
            text, label = lines[i].split("\t")
            toks = text.replace("(", "").replace(")", "").replace("]", "X").split()
            assert ex["inputs"].shape == (2048,) and ex["inputs"].dtype == np.int32
            assert int(ex["lengths"]) == len(toks) + 1
            assert [vocab[j] for j in ex["inputs"][: len(toks)]] == toks
            assert vocab[ex["inputs"][len(toks)]] == "<eos>" and not ex["inputs"][len(toks) + 1 :].any()
            assert int(ex["targets"]) == int(label) == evaluate(text)


def test_reader_on_a_release_format_fixture(tmp_path):
    """Hand-written rows in the release format; vocabulary order and ids worked out by hand."""
    d = tmp_path / "lra_release" / "lra_release" / "listops-1000"
    d.mkdir(parents=True)
    train = "Source\tTarget\r\n( ( ( [MAX 2 ) 9 ) ] )\t9\r\n( ( ( ( [MIN 2 ) 2 ) 3 ) ] )\t2\r\n"
    (d / "basic_train.tsv").write_text(train, newline="")
    (d / "basic_val.tsv").write_text("Source\tTarget\n( ( ( [SM 4 ) 8 ) ] )\t2\n", newline="")
    (d / "basic_test.tsv").write_text("Source\tTarget\n( ( ( [MED 1 ) 5 ) ] )\t3\n", newline="")
    cfg = DataConfig(name="listops", root=str(tmp_path), seq_len=8)
    info = DATASETS["listops"].info(cfg)
    # counts: 2 ×3, X ×2, [MAX 1, 9 1, [MIN 1, 3 1 → by count desc, then string order
    assert info.vocab == ["<pad>", "<unk>", "<eos>", "2", "X", "3", "9", "[MAX", "[MIN"]
    tr = DATASETS["listops"].load(cfg, "train")
    np.testing.assert_array_equal(tr[0]["inputs"], [7, 3, 6, 4, 2, 0, 0, 0])
    np.testing.assert_array_equal(tr[1]["inputs"], [8, 3, 3, 5, 4, 2, 0, 0])
    assert [int(tr[i]["targets"]) for i in range(2)] == [9, 2]
    te = DATASETS["listops"].load(cfg, "val")  # [SM, 4, 8 are unknown to the train vocabulary
    np.testing.assert_array_equal(te[0]["inputs"], [1, 1, 1, 4, 2, 0, 0, 0])
    # truncation keeps seq_len − 1 tokens then <eos>
    short = DATASETS["listops"].load(DataConfig(name="listops", root=str(tmp_path), seq_len=3), "train")
    np.testing.assert_array_equal(short[0]["inputs"], [7, 3, 2])


def test_missing_data_error_names_path_layout_and_command(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        DATASETS["listops"].load(DataConfig(name="listops", root=str(tmp_path)), "train")
    msg = str(e.value)
    assert str(tmp_path / "listops") in msg and "basic_train.tsv" in msg
    assert f"python scripts/prepare_data.py listops --out {tmp_path / 'listops'}" in msg


def test_corrupt_tsv_is_named(tmp_path):
    d = tmp_path / "listops"
    d.mkdir()
    for s in ("train", "val", "test"):
        (d / f"basic_{s}.tsv").write_text("Source\tTarget\n( ( ( [MAX 2 ) 9 ) ] )\tnine\n")
    with pytest.raises(ValueError, match="basic_train.tsv.*line 2"):
        DATASETS["listops"].load(DataConfig(name="listops", root=str(tmp_path)), "train")


# ---------------------------------------------------------------- rule baselines


def test_rule_evaluation_by_depth_worked_by_hand():
    from ssm.data.lra_gen import listops_rules as rules

    # [MAX 2 [MIN 9 8 [SM 7 7 ] ] 5 ]: depth 1 sees 2, 5 → 5; depth 2 adds MIN(9, 8) = 8 → 8; depth 3
    # makes the MIN MIN(9, 8, SM(7, 7) = 4) = 4 → MAX(2, 4, 5) = 5, the label
    tree = rules.parse("( ( ( ( ( [MAX 2 ) ( ( ( ( [MIN 9 ) 8 ) ( ( ( [SM 7 ) 7 ) ] ) ) ] ) ) 5 ) ] )")
    assert tree == ("[MAX", [2, ("[MIN", [9, 8, ("[SM", [7, 7])]), 5])
    assert [rules.evaluate(tree, d) for d in (0, 1, 2, 3, None)] == [None, 5, 8, 5, 5]
    low = rules.parse("[MIN 6 [MAX 1 [SM 7 7 ] ] 5 ]")
    assert [rules.evaluate(low, d) for d in (1, 2, 3)] == [5, 1, 4]  # MIN(6, 5); MIN(6, MAX(1), 5); MAX(1, 4) = 4
    assert rules.evaluate(rules.parse("[SM [MIN 1 2 ] [MAX 3 4 ] ]"), 1) is None  # no direct digit
    assert rules.evaluate(rules.parse("7"), 0) == 7
    for bad in ("[MAX 1 2", "[MAX 1 2 ] ]", "[MAX 1 12 ]", "[MAX 1 2 ] 3"):
        with pytest.raises(ValueError, match="ListOps"):
            rules.parse(bad)


def test_full_depth_rule_is_the_label(rows):
    from ssm.data.lra_gen import listops_rules as rules

    for src, label in rows[:300]:
        assert rules.evaluate(rules.parse(src)) == label


def test_rule_accuracies_worked_by_hand():
    from ssm.data.lra_gen import listops_rules as rules

    train = [("[MAX 1 9 ]", 9), ("[MAX 2 9 ]", 9), ("[MAX 3 4 ]", 4), ("[MIN 0 5 ]", 0), ("[SM 4 4 ]", 8)]
    # prior 9; outer rule MAX→9, MIN→0, SM→8 (ties broken by first seen)
    rows = [
        ("[MAX 3 [MAX 9 9 ] ]", 9),  # prior ✓, outer ✓, depth 1 (3) ✗, depth 2 ✓
        ("[MIN 7 [SM 1 1 ] ]", 2),  # prior ✗, outer ✗, depth 1 (7) ✗, depth 2 ✓
        ("[SM [MIN 8 9 ] [MAX 0 0 ] ]", 8),  # prior ✗, outer ✓, depth 1 falls back to outer ✓, depth 2 ✓
        ("[MED 1 3 ]", 2),  # unseen operator: prior/outer 9 ✗; depth 1 ✓
    ]
    got = rules.rule_accuracies(train, rows, depths=(1, 2))
    assert got == {"prior": 0.25, "outer operator": 0.5, "depth 1": 0.5, "depth 2": 1.0}


def test_rules_script_prints_the_table_and_names_missing_data(mini, tmp_path):
    script = str(REPO / "scripts" / "listops_rules.py")
    out = subprocess.run([sys.executable, script, str(mini), "--depths", "1"],
                         check=True, capture_output=True, text=True).stdout  # fmt: skip
    lines = out.splitlines()
    assert lines[0].split() == ["rule", "val", "test"]
    assert [ln.rsplit(None, 2)[0] for ln in lines[1:]] == ["prior", "outer operator", "depth 1"]
    bad = subprocess.run([sys.executable, script, str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert bad.returncode == 2 and str(tmp_path / "nowhere" / "listops") in bad.stderr
    assert f"prepare_data.py listops --out {tmp_path / 'nowhere' / 'listops'}" in bad.stderr


def _script(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, str(REPO / "scripts" / f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.usefixtures("quick_compile")  # a tiny run: compilation time
def test_rules_script_scores_a_trained_model_as_evaluate_does(mini, tmp_path, capsys):
    # A tiny lra.listops model trained a few steps; the script's per-row answers (length-sorted batches cut
    # to multiples of 256) must give the accuracy that scripts/evaluate.py computes through the training
    # system's evaluator on full-length padded batches.
    import json

    from ssm.config import replace
    from ssm.train import train

    cfg = replace(
        configs.get_preset("lra.listops"),
        model=dict(layer="s4d", measure=None, n_ssm=None, d_model=8, n_layers=1, d_state=4, mask_padding=True),
        data=dict(root=str(mini), batch_size=8, eval_batch_size=8, num_workers=0, length_bucket=256),
        optim=dict(warmup_steps=0, decay_steps=None),
        train=dict(steps=3, eval_every=3, save_every=3, run_dir=str(tmp_path / "run"), progress="none",
                   async_checkpoint=False, wandb="disabled"),
    )  # fmt: skip
    train(cfg, verbose=False)
    assert _script("listops_rules").main([str(mini), "--depths", "1", "--run", cfg.train.run_dir,
                                           "--checkpoint", "latest"]) == 0  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    i = lines.index(f"model {cfg.train.run_dir} (latest checkpoint)")
    table = {ln.rsplit(None, 2)[0]: [float(v.rstrip("%")) for v in ln.split()[-2:]] for ln in lines[i + 1 :]}
    assert list(table) == ["accuracy", "agrees prior", "agrees outer operator", "agrees depth 1"]
    for split, col in (("val", 0), ("test", 1)):
        assert _script("evaluate").main([cfg.train.run_dir, "--split", split, "--checkpoint", "latest"]) == 0
        want = json.loads(capsys.readouterr().out)["metrics"]["accuracy"]
        assert table["accuracy"][col] == pytest.approx(100 * want, abs=0.05)  # printed to 0.1%
    assert all(0.0 <= v <= 100.0 for vals in table.values() for v in vals)
