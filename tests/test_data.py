"""Data sets: the four specs on small fixtures in their real formats, splits, augmentation,
batching, resizing and one-line errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from supernet.data.datasets import (
    Split,
    batches,
    calib_batches,
    images,
    load_data,
    normalize,
    resize,
    stratified_split,
)


def _images(n: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
            np.arange(n, dtype=np.int64) % 10)


def _cifar_dir(tmp_path, n: int = 20):
    d = tmp_path / "cifar"
    d.mkdir()
    arrays = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        x, y = _images(n, seed=i)
        arrays[name] = (x, y)
        flat = x.transpose(0, 3, 1, 2).reshape(n, -1)  # the pickled layout: R plane, G, B
        with open(d / name, "wb") as f:
            pickle.dump({b"data": flat, b"labels": y.tolist(), b"batch_label": name.encode()}, f)
    return d, arrays


def _folder(tmp_path, splits=("train", "val"), per_class: int = 3, size: int = 20):
    root = tmp_path / "imgs"
    for s in splits:
        for c in ("cat", "dog"):
            (root / s / c).mkdir(parents=True)
            for i in range(per_class):
                colour = (200, 10, 10) if c == "cat" else (10, 10, 200)
                Image.new("RGB", (size, size + 4), colour).save(root / s / c / f"{i}.png")
    return root


def test_digits_are_real_three_channel_images_with_a_fixed_stratified_split():
    d = load_data("digits", 16)
    assert d.name == "digits" and d.num_classes == 10
    assert d.train.x.shape[1:] == (3, 16, 16) and d.train.x.dtype == torch.uint8
    assert len(d.train) + len(d.val) + len(d.test) == 1797
    assert abs(len(d.train) / 1797 - 0.7) < 0.01 and abs(len(d.test) / 1797 - 0.15) < 0.01
    assert torch.equal(d.train.x[:, 0], d.train.x[:, 2])  # grey: identical channels
    for s in (d.train, d.val, d.test):  # every class in every split, in proportion
        counts = torch.bincount(s.y, minlength=10).float()
        assert counts.min() > 0.8 * counts.mean()
    again = load_data("digits", 16)
    assert torch.equal(again.val.x, d.val.x) and torch.equal(again.test.y, d.test.y)
    other = load_data("digits", 16, seed=1)
    assert not torch.equal(other.val.y, d.val.y)
    assert not d.flip and d.pad > 0  # crops, but no flips for digits


def test_split_indices_are_disjoint_and_cover_every_image():
    y = np.repeat(np.arange(10), [50 + 3 * c for c in range(10)])
    parts = stratified_split(y, [0.7, 0.15, 0.15], seed=4)
    joined = np.concatenate(parts)
    assert len(joined) == len(y) and len(np.unique(joined)) == len(y)
    for p, f in zip(parts, [0.7, 0.15, 0.15]):
        for c in range(10):
            assert abs((y[p] == c).sum() - f * (y == c).sum()) <= 1


def test_calibration_images_come_from_train_only():
    d = load_data("digits", 16)
    xs = torch.cat([x for x, _ in calib_batches(d, 100, 32)])
    assert len(xs) == 100
    train = normalize(d.train.x, d).flatten(1)
    for row in xs.flatten(1)[:20]:
        assert (train == row).all(1).any()
    again = torch.cat([x for x, _ in calib_batches(d, 100, 50)])
    assert torch.equal(xs, again)  # a fixed set, whatever the batch size


def test_cifar10_folder_in_the_python_pickle_layout(tmp_path):
    path, arrays = _cifar_dir(tmp_path)
    d = load_data(f"cifar10:{path}", 32, val_fraction=0.2)
    assert d.num_classes == 10 and d.flip and d.pad == 4
    assert len(d.train) + len(d.val) == 100 and len(d.val) == 20
    x, y = arrays["test_batch"]
    assert torch.equal(d.test.x, torch.from_numpy(x).permute(0, 3, 1, 2))  # HWC <-> CHW right
    assert torch.equal(d.test.y, torch.from_numpy(y))
    all_train = torch.cat([d.train.x, d.val.x]).flatten(1)
    first = torch.from_numpy(arrays["data_batch_1"][0][0]).permute(2, 0, 1).flatten()
    assert (all_train == first).all(1).any()
    assert load_data(f"cifar10:{path}", 16).train.x.shape[-1] == 16


@pytest.mark.parametrize("damage", ["missing_dir", "missing_batch", "garbage", "wrong_dict"])
def test_cifar10_errors_are_one_line_naming_path_and_layout(tmp_path, damage):
    path, _ = _cifar_dir(tmp_path, n=4)
    bad = path
    if damage == "missing_dir":
        bad = tmp_path / "nope"
    elif damage == "missing_batch":
        (path / "data_batch_3").unlink()
    elif damage == "garbage":
        (path / "data_batch_2").write_bytes(b"\x00not a pickle")
        bad = path / "data_batch_2"
    else:
        with open(path / "test_batch", "wb") as f:
            pickle.dump({b"pixels": 1}, f)
        bad = path / "test_batch"
    with pytest.raises(ValueError) as e:
        load_data(f"cifar10:{path if damage != 'missing_dir' else bad}", 32)
    msg = str(e.value)
    assert "\n" not in msg and str(bad) in msg and "data_batch_1" in msg


def test_image_folder_is_indexed_not_read_and_decodes_per_batch(tmp_path):
    root = _folder(tmp_path, splits=("train", "val", "test"))
    d = load_data(f"folder:{root}", 16)
    assert d.streamed and d.crop == "pad" and d.pad == 2  # 16 px: CIFAR-style crops
    assert d.num_classes == 2 and len(d.train) == 6 and len(d.val) == 6 and len(d.test) == 6
    x, y = images(d.train, d)
    assert x.shape[1:] == (3, 16, 16) and x.dtype == torch.uint8
    cat = x[y == 0].float().mean((0, 2, 3))
    assert cat[0] > 150 and cat[2] < 50  # class 0 = "cat" (sorted), red, channel order kept
    assert load_data(f"folder:{_folder(tmp_path / 'b')}", 16).test is None


@pytest.mark.parametrize("damage", ["no_val", "no_classes", "val_lacks", "val_adds",
                                    "empty_class"])
def test_image_folder_errors(tmp_path, damage):
    import shutil

    root = _folder(tmp_path)
    where = root
    if damage == "no_val":
        shutil.rmtree(root / "val")
    elif damage == "no_classes":
        shutil.rmtree(root / "train")
        (root / "train").mkdir()
        where = root / "train"
    elif damage == "val_lacks":
        shutil.rmtree(root / "val" / "dog")
        where = root / "val"
    elif damage == "val_adds":
        (root / "val" / "eel").mkdir()
        where = root / "val"
    else:
        for f in (root / "train" / "dog").iterdir():
            f.unlink()
        where = root / "train" / "dog"
    with pytest.raises(ValueError) as e:
        load_data(f"folder:{root}", 16)
    assert "\n" not in str(e.value) and str(where) in str(e.value)
    assert "train/<class>" in str(e.value)


def test_npz_file_and_train_val_folder(tmp_path):
    x, y = _images(50)
    np.savez(tmp_path / "one.npz", x=x, y=y)
    d = load_data(f"npz:{tmp_path / 'one.npz'}", 32, val_fraction=0.2)
    assert len(d.train) == 40 and len(d.val) == 10 and d.test is None and d.num_classes == 10
    shared = tmp_path / "shared"
    shared.mkdir()
    np.savez(shared / "c_train_40.npz", x=x[:40], y=y[:40])
    np.savez(shared / "c_val_10.npz", x=x[40:], y=y[40:])
    d = load_data(f"npz:{shared}", 32)
    assert torch.equal(d.val.x, torch.from_numpy(x[40:]).permute(0, 3, 1, 2))
    assert len(d.train) == 40


@pytest.mark.parametrize("damage", ["missing", "garbage", "float_x", "short_y", "no_val_file"])
def test_npz_errors(tmp_path, damage):
    x, y = _images(10)
    p = tmp_path / "d.npz"
    if damage == "garbage":
        p.write_bytes(b"garbage")
    elif damage == "float_x":
        np.savez(p, x=x.astype(np.float32), y=y)
    elif damage == "short_y":
        np.savez(p, x=x, y=y[:5])
    elif damage == "no_val_file":
        p = tmp_path / "folder"
        p.mkdir()
        np.savez(p / "a_train.npz", x=x, y=y)
    with pytest.raises(ValueError) as e:
        load_data(f"npz:{p}", 32)
    assert "\n" not in str(e.value) and str(p) in str(e.value) and "(N, H, W, 3)" in str(e.value)


@pytest.mark.parametrize("spec", ["mnist", "cifar10", "npz:", "digits:x", ""])
def test_unknown_specs_list_the_allowed_ones(spec):
    with pytest.raises(ValueError, match="digits \\| cifar10:PATH"):
        load_data(spec, 32)


def test_random_crop_and_flip_are_seeded_shifts_of_the_image():
    d = load_data("digits", 16)
    x = d.train.x[:8]
    split = Split(x, torch.arange(8))  # the label names the image a crop came from

    def crops(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        return next(iter(batches(split, d, 8, seed=seed, train=True)))

    a, rows = crops(1)
    assert torch.equal(a, crops(1)[0]) and not torch.equal(a, crops(2)[0])
    p = d.pad
    padded = torch.nn.functional.pad(x, (p, p, p, p))
    for out, i in zip(a, rows.tolist()):  # a crop of the zero-padded original, unflipped
        cands = torch.stack([padded[i, :, dy:dy + 16, dx:dx + 16] for dy in range(2 * p + 1)
                             for dx in range(2 * p + 1)])
        assert any(torch.equal(out, c) for c in normalize(cands, d))
    d.flip, d.pad = True, 0
    f, rows = crops(3)
    flipped = [torch.equal(f[k], normalize(x[i:i + 1], d)[0].flip(-1))
               for k, i in enumerate(rows.tolist())]
    assert any(flipped) and not all(flipped)
    assert all(fl or torch.equal(f[k], normalize(x[i:i + 1], d)[0])
               for k, (fl, i) in enumerate(zip(flipped, rows.tolist())))


def test_train_batches_are_seeded_shuffled_and_split_over_ranks():
    d = load_data("digits", 16)
    one = list(batches(d.train, d, 32, seed=5, train=True, drop_last=True))
    assert len(one) == len(d.train) // 32 and all(len(y) == 32 for _, y in one)
    again = list(batches(d.train, d, 32, seed=5, train=True, drop_last=True))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(one, again))
    other = next(iter(batches(d.train, d, 32, seed=6, train=True)))
    assert not torch.equal(other[1], one[0][1])
    r0 = list(batches(d.train, d, 32, seed=5, train=True, drop_last=True, rank=0, world=2))
    r1 = list(batches(d.train, d, 32, seed=5, train=True, drop_last=True, rank=1, world=2))
    for (x, y), (x0, y0), (x1, y1) in zip(one, r0, r1):  # same crops whatever the split
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)
    plain = next(iter(batches(d.val, d, 10)))
    assert torch.equal(plain[0], normalize(d.val.x[:10], d))  # eval: in order, no augmentation


def test_worker_processes_give_the_same_batches():
    d = load_data("digits", 16)
    main = list(batches(d.train, d, 256, seed=3, train=True))
    pooled = list(batches(d.train, d, 256, seed=3, train=True, workers=2))
    assert len(main) == len(pooled)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(main, pooled))


def test_resize_is_bicubic_antialiased():
    x = torch.rand(2, 3, 32, 32)
    assert resize(x, 32) is x
    small = resize(x, 24)
    ref = torch.nn.functional.interpolate(x, size=(24, 24), mode="bicubic", antialias=True)
    assert torch.equal(small, ref)
    flat = torch.full((1, 3, 32, 32), 0.7)
    assert torch.allclose(resize(flat, 13), torch.full((1, 3, 13, 13), 0.7), atol=1e-6)
    stripes = torch.zeros(1, 1, 32, 32)
    stripes[..., ::2] = 1  # without antialiasing, nearest pixels of a stripe pattern alias
    assert (resize(stripes, 16) - 0.5).abs().max() < 0.1
