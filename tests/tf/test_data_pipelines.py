"""approxtrain.data.load: tf.data pipelines on small fixture datasets written into tmp_path."""

import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from approxtrain import data  # noqa: E402
from approxtrain.data import catalog  # noqa: E402
from approxtrain.data.idx import write_idx  # noqa: E402

IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@pytest.fixture
def mnist_dir(tmp_path):
    rng = np.random.default_rng(0)
    arrays = (
        rng.integers(0, 256, (40, 28, 28), dtype=np.uint8),
        np.arange(40, dtype=np.uint8) % 10,
        rng.integers(0, 256, (9, 28, 28), dtype=np.uint8),
        np.arange(9, dtype=np.uint8),
    )
    for name, array in zip(IDX_NAMES, arrays):
        write_idx(str(tmp_path / (name + ".gz")), array)
    return str(tmp_path), arrays


def batches(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def test_mnist_pipeline_normalises_batches_and_keeps_test_order(mnist_dir):
    path, (xtr, ytr, xte, yte) = mnist_dir
    d = data.load("mnist", data_dir=path, batch_size=16, seed=1)
    assert d.info.input_shape == (28, 28, 1) and d.info.num_classes == 10
    assert (d.info.num_train, d.info.num_test, d.info.num_validation) == (40, 9, 0)
    assert d.validation is None and d.info.augment is False
    x, y = batches(d.test)
    spec = catalog.get("mnist")
    expected = (xte[..., None].astype(np.float32) / 255 - spec.mean[0]) / spec.std[0]
    np.testing.assert_allclose(x, expected, rtol=1e-6)
    assert y.tolist() == yte.tolist()
    assert [b[0].shape[0] for b in d.train] == [16, 16, 8]


def test_train_shuffle_is_seeded_and_a_permutation(mnist_dir):
    path, (_, ytr, _, _) = mnist_dir
    first = batches(data.load("mnist", data_dir=path, batch_size=40, seed=1).train)[1]
    again = batches(data.load("mnist", data_dir=path, batch_size=40, seed=1).train)[1]
    other = batches(data.load("mnist", data_dir=path, batch_size=40, seed=2).train)[1]
    assert first.tolist() == again.tolist()
    assert first.tolist() != other.tolist()
    assert sorted(first.tolist()) == sorted(ytr.tolist())


def test_subset_validation_and_test_subset(mnist_dir):
    path, (xtr, ytr, _, _) = mnist_dir
    d = data.load("mnist", data_dir=path, batch_size=8, subset=20, test_subset=3, validation=0.25)
    assert (d.info.num_train, d.info.num_validation, d.info.num_test) == (15, 5, 3)
    assert sorted(batches(d.train)[1].tolist()) == sorted(ytr[:15].tolist())
    assert batches(d.validation)[1].tolist() == ytr[15:20].tolist()
    assert len(batches(d.test)[1]) == 3


def test_cifar_augmentation_only_on_train(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(1, 256, (8, 32, 32, 3), dtype=np.uint8)  # no zeros: padding shows as exact zeros
    y = np.arange(8)
    np.savez(tmp_path / "cifar10.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    d = data.load("cifar10", data_dir=str(tmp_path), batch_size=8, seed=0)
    assert d.info.augment is True
    spec = catalog.get("cifar10")
    normalised = (x.astype(np.float32) / 255 - np.array(spec.mean)) / np.array(spec.std)
    np.testing.assert_allclose(batches(d.test)[0], normalised, rtol=1e-5, atol=1e-6)
    train_x, train_y = batches(d.train)
    assert train_x.shape == (8, 32, 32, 3)
    changed = [not np.allclose(train_x[i], normalised[label], atol=1e-5) for i, label in enumerate(train_y)]
    assert any(changed)  # random crops/flips moved pixels
    plain = batches(data.load("cifar10", data_dir=str(tmp_path), batch_size=8, augment=False).train)
    for image, label in zip(*plain):
        np.testing.assert_allclose(image, normalised[label], rtol=1e-5, atol=1e-6)


def test_class_folders_decode_resize_and_label(tmp_path):
    colours = {"blue": (0, 0, 255), "red": (255, 0, 0), "green": (0, 255, 0)}
    for split, count in (("train", 2), ("val", 1)):
        for name, colour in colours.items():
            os.makedirs(tmp_path / split / name)
            for i in range(count):
                image = np.full((10 + i, 12, 3), colour, np.uint8)
                png = tf.io.encode_png(image).numpy()
                (tmp_path / split / name / f"{i}.png").write_bytes(png)
    d = data.load("imagenet", data_dir=str(tmp_path), batch_size=4, image_size=8, seed=0)
    assert d.info.input_shape == (8, 8, 3) and d.info.num_classes == 3
    assert d.info.class_names == ("blue", "green", "red")
    x, y = batches(d.test)
    assert x.shape == (3, 8, 8, 3) and y.tolist() == [0, 1, 2]
    mean, std = np.array(catalog.get("imagenet").mean), np.array(catalog.get("imagenet").std)
    pixels = x * std + mean  # back to [0, 1]
    assert np.argmax(pixels[0, 4, 4]) == 2 and np.argmax(pixels[2, 4, 4]) == 0
    assert batches(d.train)[0].shape == (6, 8, 8, 3)


def test_argument_errors(mnist_dir):
    path, _ = mnist_dir
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        data.load("mnist", data_dir=path, batch_size=0)
    with pytest.raises(ValueError, match=r"validation must be a fraction in \[0, 1\), got 1.5"):
        data.load("mnist", data_dir=path, validation=1.5)
    with pytest.raises(ValueError, match="subset must be a positive integer"):
        data.load("mnist", data_dir=path, subset=-3)
    with pytest.raises(ValueError, match="image_size applies to class-folder datasets only"):
        data.load("mnist", data_dir=path, image_size=64)
    with pytest.raises(ValueError, match="leaves no validation or no training examples"):
        data.load("mnist", data_dir=path, subset=2, validation=0.1)
