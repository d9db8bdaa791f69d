"""LRA Pathfinder / Path-X: the snakes generator (ssm.data.lra_gen.pathfinder) and the reader
(ssm.data.pathfinder).

The label rule is checked geometrically: each target contour's strokes are labelled into
connected components here (scipy.ndimage, after bridging the gaps between paddles), and a picture
is positive exactly when both marker centres lie on the same contour.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from ssm.config import DataConfig
from ssm.data import DATASETS
from ssm.data._files import CorruptFileError, DatasetNotFoundError
from ssm.data.lra_gen import pathfinder as pf

DISTRACTORS = {32: 5, 64: 5, 128: 8, 256: 7}  # LRA: 20, 22, 35, 30 // (14 // 3)
CASES = [(s, c) for s in (32, 64, 128, 256) for c in (6, 9, 14) if (s, c) not in {(64, 14), (256, 9), (256, 14)}]


def disk(r: int) -> np.ndarray:
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    return x * x + y * y <= r * r


# ---------------------------------------------------------------- parameters


@pytest.mark.parametrize("size", [32, 64, 128, 256])
@pytest.mark.parametrize("contour", [6, 9, 14])
def test_lra_parameters(size, contour):
    p = pf.lra_params(size, contour)
    assert p.window == size and p.contour_length == contour and p.distractor_length == contour // 3
    assert p.num_distractor_snakes == DISTRACTORS[size] and not p.use_single_paddles
    assert p.antialias_scale == 2 and float(p.paddle_thickness * 2).is_integer()
    if size == 128:  # Path-X
        assert p.paddle_margin_list == (2, 3) and p.seed_distance == 20 and p.marker_radius == 3
        assert p.paddle_thickness == 1.5 and p.continuity == 1.8 and p.snake_contrast_list == (0.9,)


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match="size"):
        pf.lra_params(48)
    with pytest.raises(ValueError, match="contour"):
        pf.lra_params(32, 10)
    with pytest.raises(ValueError, match="integer"):
        pf.PathfinderParams(paddle_thickness=0.3, antialias_scale=2)


# ---------------------------------------------------------------- primitives vs brute force


def test_dilate_matches_cv2_semantics_brute_force():
    rng = np.random.default_rng(0)
    src = rng.random((7, 9))
    taps = np.array([[1, 1], [2, 3], [-1, 0], [0, -4]])
    out = pf.dilate_max(src, taps)
    for y in range(7):
        for x in range(9):
            vals = [src[y + dy, x + dx] for dy, dx in taps if 0 <= y + dy < 7 and 0 <= x + dx < 9]
            assert out[y, x] == (max(vals) if vals else -np.inf)
    blocked, covered = pf.dilate_bool(src > 0.7, taps)
    np.testing.assert_array_equal(blocked, out > 0.7)
    np.testing.assert_array_equal(covered, out > -np.inf)


def test_bytescale_and_translate():
    a = np.array([[0.5, 1.0], [2.0, 1.25]])
    np.testing.assert_array_equal(pf.bytescale(a), np.floor((a - 0.5) / 1.5 * 255 + 0.5).astype(np.uint8))
    assert pf.translate((10, 10), 0.0, 3) == (10, 13)
    # ceil of 12.5; 10 + 2.5·cos(π/2) rounds to 10.0, but 0 + 1.5e-16 stays positive and ceils to 1
    assert pf.translate((10, 10), np.pi / 2, 2.5) == (13, 10)
    assert pf.translate((0, 0), np.pi / 2, 2.5) == (3, 1)
    assert pf.flip(-0.5) == pytest.approx(np.pi - 0.5) and pf.flip(0.5) == pytest.approx(0.5 - np.pi)


# ---------------------------------------------------------------- pictures


@pytest.mark.parametrize("size,contour", CASES)
def test_pictures_follow_the_rules(size, contour):
    p = pf.lra_params(size, contour)
    gen = pf.Generator(p)
    for i in range(3):
        img, label, margin, info = gen.draw(pf.image_rng(11, p, 0, i))
        assert img.dtype == np.uint8 and img.shape == (size, size) and img.max() == 255
        assert label in (0, 1) and margin in p.paddle_margin_list
        # paddles per contour and distractor contours, as the parameters say
        assert info["target_segments"] == [contour, contour]
        assert len(info["distractor_segments"]) <= p.num_distractor_snakes
        assert all(n == contour // 3 for n in info["distractor_segments"])
        # each target contour is one connected curve once the inter-paddle gaps are bridged
        strokes = [s > 0 for s in info["target_images"]]
        for s in strokes:
            _, k = ndimage.label(ndimage.binary_dilation(s, structure=disk(margin + 1)))
            assert k == 1
        # the label rule, from the geometry: which contour does each marker centre lie on?
        (_, o_tip), (_, t_tip) = info["origin"], info["terminal"]
        on = [int(np.argmax([s[tip] for s in info["target_images"]])) for tip in (o_tip, t_tip)]
        assert all(strokes[c][tip] for c, tip in zip(on, (o_tip, t_tip)))
        assert label == int(on[0] == on[1])
        # the markers are drawn: the 3x3 block around each centre is lit
        for y, x in (o_tip, t_tip):
            assert img[max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2].min() > 0


def test_labels_are_balanced():
    p = pf.lra_params(32, 6)
    gen = pf.Generator(p)
    labels = [gen.draw(pf.image_rng(5, p, 0, i))[1] for i in range(60)]
    assert 15 <= sum(labels) <= 45


# ---------------------------------------------------------------- release files


def _files(folder: Path) -> dict[str, bytes]:
    return {str(f.relative_to(folder)): f.read_bytes() for f in sorted(folder.rglob("*")) if f.is_file()}


def test_same_seed_same_bytes_any_worker_count(tmp_path):
    p = pf.lra_params(32, 14)
    a = pf.write_release(tmp_path / "a", p, 6, seed=4, batch_size=4, workers=1, progress=False)
    b = pf.write_release(tmp_path / "b", p, 6, seed=4, batch_size=4, workers=2, progress=False)
    c = pf.write_release(tmp_path / "c", p, 6, seed=5, batch_size=4, workers=1, progress=False)
    fa, fb, fc = _files(a), _files(b), _files(c)
    assert sorted(fa) == [f"imgs/0/sample_{i}.png" for i in range(4)] + [f"imgs/1/sample_{i}.png" for i in range(2)] + [
        "metadata/0.npy", "metadata/1.npy"]  # fmt: skip
    assert fa == fb
    assert fa["imgs/0/sample_0.png"] != fc["imgs/0/sample_0.png"]
    lines = fa["metadata/1.npy"].decode().splitlines()
    assert len(lines) == 2
    f = lines[1].split(" ")
    assert f[:3] == ["imgs/1", "sample_1.png", "1"] and f[3] in ("0", "1")
    assert f[4:] == ["1.0", "14", "4", "2", "0.5", "1", "1"]  # continuity … len(paddle_contrast_list)
    assert a == tmp_path / "a" / "pathfinder32" / "curv_contour_length_14"


@pytest.mark.parametrize("size", [32, 64, 128, 256])
def test_pngs_are_single_channel_8bit_at_release_size(tmp_path, size):
    folder = pf.write_release(tmp_path, pf.lra_params(size, 6), 2, seed=0, workers=1, progress=False)
    assert folder.name == "curv_baseline"
    for i in range(2):
        with Image.open(folder / "imgs" / "0" / f"sample_{i}.png") as im:
            assert im.format == "PNG" and im.mode == "L" and im.size == (size, size)


# ---------------------------------------------------------------- reader


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("lra")
    folder = pf.write_release(root / "pathfinder", pf.lra_params(32, 14), 30, seed=2, batch_size=12,
                              workers=1, progress=False)  # fmt: skip
    return root, folder


def test_reader_parses_generated_data(mini):
    root, folder = mini
    meta = [ln.split(" ") for b in range(3) for ln in (folder / "metadata" / f"{b}.npy").read_text().splitlines()]
    truth = {}
    for f in meta:
        with Image.open(folder / f[0] / f[1]) as im:
            truth[np.asarray(im).tobytes()] = int(f[3])
    cfg = DataConfig(name="pathfinder", root=str(root), resolution=32)
    info = DATASETS["pathfinder"].info(cfg)
    assert (info.task, info.d_input, info.d_output, info.seq_len, info.tokens) == ("classification", 1, 2, 1024, False)
    seen = []
    for split, n in (("train", 24), ("val", 3), ("test", 3)):
        src = DATASETS["pathfinder"].load(cfg, split)
        assert len(src) == n
        for i in range(n):
            ex = src[i]
            assert ex["inputs"].shape == (1024, 1) and ex["inputs"].dtype == np.float32
            assert 0.0 <= ex["inputs"].min() and ex["inputs"].max() <= 1.0
            pixels = np.rint(ex["inputs"][:, 0] * 255).astype(np.uint8).reshape(32, 32)
            assert truth[pixels.tobytes()] == int(ex["targets"])
            seen.append(pixels.tobytes())
    assert sorted(seen) == sorted(truth)  # the three splits partition the images
    centred = DATASETS["pathfinder"].load(DataConfig(name="pathfinder", root=str(root), resolution=32,
                                                     normalize=True), "train")  # fmt: skip
    plain = DATASETS["pathfinder"].load(cfg, "train")
    np.testing.assert_allclose(centred[0]["inputs"], 2 * plain[0]["inputs"] - 1, atol=1e-6)


def test_reader_release_fixture_order_and_empty_images(tmp_path):
    """Release-style metadata (batch files ordered by number, not name) and a 0-byte image."""
    d = tmp_path / "lra_release" / "lra_release" / "pathfinder32" / "curv_baseline"
    rng = np.random.default_rng(0)
    expected = []
    for b in (2, 10):
        (d / "imgs" / str(b)).mkdir(parents=True)
        (d / "metadata").mkdir(exist_ok=True)
        lines = []
        for i in range(5):
            a = rng.integers(0, 256, (32, 32), dtype=np.uint8)
            Image.fromarray(a, "L").save(d / "imgs" / str(b) / f"sample_{i}.png")
            lines.append(f"imgs/{b} sample_{i}.png {i} {i % 2} 1.0 6 2 2 0.5 1 1")
            expected.append((a, i % 2))
        (d / "imgs" / str(b) / "sample_5.png").write_bytes(b"")  # the release's empty file
        lines.append(f"imgs/{b} sample_5.png 5 1 1.0 6 2 2 0.5 1 1")
        (d / "metadata" / f"{b}.npy").write_text("\n".join(lines) + "\n")
    a = DATASETS["pathfinder"]._arrays(tmp_path, 32, 6)
    assert a["pixels"].shape == (10, 1024)
    for k, (img, lab) in enumerate(expected):
        np.testing.assert_array_equal(a["pixels"][k], img.reshape(-1))
        assert a["labels"][k] == lab
    cfg = DataConfig(name="pathfinder", root=str(tmp_path), resolution=32, contour=6)
    assert [len(DATASETS["pathfinder"].load(cfg, s)) for s in ("train", "val", "test")] == [8, 1, 1]
    (d / "imgs" / "10" / "sample_4.png").write_bytes(b"")  # 9 images leave ⌊9/10⌋ = 0: refused, not skipped
    with pytest.raises(CorruptFileError, match=r"metadata: the val and test splits \(⌊N/10⌋ of N = 9 non-empty"):
        DATASETS["pathfinder"].load(cfg, "train")


def test_missing_pathx_error_names_path_layout_and_command(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        DATASETS["pathfinder"].load(DataConfig(name="pathfinder", root=str(tmp_path), resolution=128), "train")
    msg = str(e.value)
    assert str(tmp_path / "pathfinder" / "pathfinder128" / "curv_contour_length_14") in msg
    assert "metadata/<batch>.npy" in msg and "sample_<i>.png" in msg
    assert f"python scripts/prepare_data.py pathfinder --size 128 --contour 14 --out {tmp_path / 'pathfinder'}" in msg


def test_bad_options_raise(tmp_path):
    with pytest.raises(ValueError, match="resolution"):
        DATASETS["pathfinder"].info(DataConfig(name="pathfinder", root=str(tmp_path), resolution=48))
    with pytest.raises(ValueError, match="contour"):
        DATASETS["pathfinder"].load(DataConfig(name="pathfinder", root=str(tmp_path), contour=7), "train")
