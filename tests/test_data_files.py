"""Dataset file readers (IDX, keras npz, CIFAR pickles, class folders): no TensorFlow needed."""

import gzip
import os
import pickle

import numpy as np
import pytest

from approxtrain.data import catalog
from approxtrain.data.arrays import load_arrays
from approxtrain.data.folders import list_folders
from approxtrain.data.idx import read_idx, write_idx

FASHION = catalog.get("fashion_mnist")
IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def random_images(n, shape=(28, 28), seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, *shape), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)


def write_mnist_dir(directory, n_train=12, n_test=5, gz=True):
    os.makedirs(directory, exist_ok=True)
    (xtr, ytr), (xte, yte) = random_images(n_train), random_images(n_test, seed=1)
    suffix = ".gz" if gz else ""
    for name, array in zip(IDX_NAMES, (xtr, ytr, xte, yte)):
        write_idx(os.path.join(directory, name + suffix), array)
    return xtr, ytr, xte, yte


# --- IDX -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip_gzip_and_raw(tmp_path, gz):
    x, _ = random_images(7, (5, 3))
    path = str(tmp_path / ("a.idx" + (".gz" if gz else "")))
    write_idx(path, x)
    with open(path, "rb") as f:
        assert (f.read(2) == b"\x1f\x8b") == gz
    np.testing.assert_array_equal(read_idx(path, expected_ndim=3), x)


def test_idx_header_is_big_endian_mnist_layout(tmp_path):
    path = str(tmp_path / "labels")
    write_idx(path, np.arange(3, dtype=np.uint8))
    raw = open(path, "rb").read()
    assert raw[:8] == bytes([0, 0, 8, 1, 0, 0, 0, 3]) and raw[8:] == bytes([0, 1, 2])


def test_idx_bad_magic(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x12\x34\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="bad magic number 12340801"):
        read_idx(str(path))


def test_idx_truncated_data(tmp_path):
    path = str(tmp_path / "t.gz")
    write_idx(path, np.zeros((4, 2, 2), np.uint8))
    data = gzip.decompress(open(path, "rb").read())[:-3]
    open(path, "wb").write(gzip.compress(data))
    with pytest.raises(ValueError, match=r"truncated: shape \(4, 2, 2\) needs 16 data bytes, found 13"):
        read_idx(path)


def test_idx_wrong_dimension_count(tmp_path):
    path = str(tmp_path / "labels")
    write_idx(path, np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match="expected an IDX file with 3 dimension"):
        read_idx(path, expected_ndim=3)


def test_idx_corrupt_gzip(tmp_path):
    path = tmp_path / "c.gz"
    path.write_bytes(b"\x1f\x8b" + b"garbage")
    with pytest.raises(ValueError, match="corrupt gzip"):
        read_idx(str(path))


# --- MNIST-family directories ----------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_idx_directory_loads_with_channel_axis(tmp_path, gz):
    xtr, ytr, xte, yte = write_mnist_dir(str(tmp_path), gz=gz)
    arrays = load_arrays(FASHION, str(tmp_path))
    assert arrays.x_train.shape == (12, 28, 28, 1) and arrays.x_test.shape == (5, 28, 28, 1)
    np.testing.assert_array_equal(arrays.x_train[..., 0], xtr)
    np.testing.assert_array_equal(arrays.y_test, yte)
    assert arrays.y_train.dtype == np.int64 and arrays.source == str(tmp_path)


def test_idx_directory_mismatched_counts(tmp_path):
    write_mnist_dir(str(tmp_path))
    write_idx(str(tmp_path / "train-labels-idx1-ubyte.gz"), np.zeros(11, np.uint8))
    with pytest.raises(ValueError, match="holds 12 images but .*train-labels.* holds 11 labels"):
        load_arrays(FASHION, str(tmp_path))


def test_idx_directory_missing_one_file(tmp_path):
    write_mnist_dir(str(tmp_path))
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(FileNotFoundError, match=r"lacks t10k-labels-idx1-ubyte\[.gz\]"):
        load_arrays(FASHION, str(tmp_path))


def test_empty_directory_says_how_to_get_the_data(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_arrays(FASHION, str(tmp_path))


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_arrays(FASHION, str(tmp_path / "nope"))


def test_labels_out_of_range(tmp_path):
    write_mnist_dir(str(tmp_path))
    write_idx(str(tmp_path / "t10k-labels-idx1-ubyte.gz"), np.array([0, 1, 2, 3, 10], np.uint8))
    with pytest.raises(ValueError, match=r"test labels must lie in \[0, 10\), found \[0, 10\]"):
        load_arrays(FASHION, str(tmp_path))


def test_wrong_image_size(tmp_path):
    write_mnist_dir(str(tmp_path))
    write_idx(str(tmp_path / "train-images-idx3-ubyte.gz"), np.zeros((12, 27, 28), np.uint8))
    with pytest.raises(ValueError, match=r"train images have shape \(27, 28, 1\), fashion_mnist needs"):
        load_arrays(FASHION, str(tmp_path))


@pytest.mark.skipif(not os.path.isdir(catalog.FASHION_MNIST_SYSTEM_DIR), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_system_copy_is_the_default():
    arrays = load_arrays(FASHION)
    assert arrays.source == catalog.FASHION_MNIST_SYSTEM_DIR
    assert arrays.x_train.shape == (60000, 28, 28, 1) and arrays.x_test.shape == (10000, 28, 28, 1)
    assert np.bincount(arrays.y_test).tolist() == [1000] * 10


# --- keras npz -------------------------------------------------------------------------------------


def test_npz_file_and_npz_in_directory(tmp_path):
    x, y = random_images(6, (32, 32, 3))
    np.savez(tmp_path / "cifar10.npz", x_train=x, y_train=y[:, None], x_test=x[:2], y_test=y[:2, None])
    for source in (str(tmp_path), str(tmp_path / "cifar10.npz")):
        arrays = load_arrays(catalog.get("cifar10"), source)
        np.testing.assert_array_equal(arrays.x_train, x)
        np.testing.assert_array_equal(arrays.y_test, y[:2])  # (N, 1) labels flattened


def test_npz_missing_array(tmp_path):
    np.savez(tmp_path / "mnist.npz", x_train=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="missing array.*y_train, x_test, y_test"):
        load_arrays(catalog.get("mnist"), str(tmp_path))


def test_npz_not_a_zip(tmp_path):
    (tmp_path / "mnist.npz").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ValueError, match="not a readable .npz file"):
        load_arrays(catalog.get("mnist"), str(tmp_path))


# --- CIFAR python pickles --------------------------------------------------------------------------


def write_cifar_batch(path, images, labels, label_key=b"labels"):
    data = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)  # stored channels-first
    with open(path, "wb") as f:
        pickle.dump({b"data": data, label_key: list(labels)}, f)


def write_cifar10_dir(root, per_batch=2):
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder)
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (6 * per_batch, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 6 * per_batch)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(names):
        part = slice(i * per_batch, (i + 1) * per_batch)
        write_cifar_batch(os.path.join(folder, name), images[part], labels[part])
    return folder, images, labels


def test_cifar10_pickles_channels_last(tmp_path):
    _, images, labels = write_cifar10_dir(str(tmp_path))
    arrays = load_arrays(catalog.get("cifar10"), str(tmp_path))
    np.testing.assert_array_equal(arrays.x_train, images[:10])
    np.testing.assert_array_equal(arrays.x_test, images[10:])
    np.testing.assert_array_equal(arrays.y_train, labels[:10])


def test_cifar100_uses_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    write_cifar_batch(folder / "train", images, [99, 0, 42], b"fine_labels")
    write_cifar_batch(folder / "test", images[:1], [7], b"fine_labels")
    arrays = load_arrays(catalog.get("cifar100"), str(folder))  # the extracted folder itself works too
    assert arrays.y_train.tolist() == [99, 0, 42] and arrays.y_test.tolist() == [7]


def test_cifar_missing_batch(tmp_path):
    folder, _, _ = write_cifar10_dir(str(tmp_path))
    os.remove(os.path.join(folder, "data_batch_3"))
    with pytest.raises(FileNotFoundError, match="lacks data_batch_3"):
        load_arrays(catalog.get("cifar10"), str(tmp_path))


def test_cifar_malformed_pickle(tmp_path):
    folder, _, _ = write_cifar10_dir(str(tmp_path))
    open(os.path.join(folder, "test_batch"), "wb").write(b"not a pickle")
    with pytest.raises(ValueError, match="test_batch: not a CIFAR python batch file"):
        load_arrays(catalog.get("cifar10"), str(tmp_path))


def test_cifar_wrong_row_length(tmp_path):
    folder, _, _ = write_cifar10_dir(str(tmp_path))
    with open(os.path.join(folder, "test_batch"), "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(ValueError, match=r"expected data of shape \(N, 3072\), found \(2, 100\)"):
        load_arrays(catalog.get("cifar10"), str(tmp_path))


# --- class folders ---------------------------------------------------------------------------------


def make_folders(root, layout):
    """layout: split -> class -> number of (dummy) image files."""
    for split, classes in layout.items():
        for name, count in classes.items():
            os.makedirs(os.path.join(root, split, name), exist_ok=True)
            for i in range(count):
                open(os.path.join(root, split, name, f"{i:03d}.png"), "wb").write(b"x")


def test_folder_listing_round_robin_labels(tmp_path):
    make_folders(str(tmp_path), {"train": {"cat": 3, "dog": 1, "ant": 2}, "val": {"dog": 1, "ant": 1}})
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    listing = list_folders(catalog.get("imagenet"), str(tmp_path))
    assert listing.class_names == ["ant", "cat", "dog"]
    paths, labels = listing.train
    # Round robin over classes: any prefix covers as many classes as it can.
    assert labels == [0, 1, 2, 0, 1, 1]
    assert [os.path.basename(p) for p in paths] == ["000.png"] * 3 + ["001.png"] * 2 + ["002.png"]
    assert listing.test[1] == [0, 2]  # labels follow train's numbering


def test_folder_missing_split(tmp_path):
    make_folders(str(tmp_path), {"train": {"a": 1, "b": 1}})
    with pytest.raises(FileNotFoundError, match="has no val/ or test/ or validation/ folder"):
        list_folders(catalog.get("imagenet"), str(tmp_path))


def test_folder_unknown_test_class(tmp_path):
    make_folders(str(tmp_path), {"train": {"a": 1, "b": 1}, "test": {"a": 1, "zebra": 1}})
    with pytest.raises(ValueError, match="class folder.*zebra"):
        list_folders(catalog.get("image_folder"), str(tmp_path))


def test_folder_needs_data_dir_and_images(tmp_path):
    with pytest.raises(ValueError, match="needs --data-dir"):
        list_folders(catalog.get("imagenet"), None)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_folders(catalog.get("imagenet"), str(tmp_path / "missing"))
    make_folders(str(tmp_path), {"train": {"a": 0, "b": 0}, "val": {"a": 0}})
    with pytest.raises(ValueError, match="no images"):
        list_folders(catalog.get("imagenet"), str(tmp_path))


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(ValueError, match="unknown dataset 'svhn'; known datasets: mnist, fashion_mnist"):
        catalog.get("svhn")
