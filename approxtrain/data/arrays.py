"""In-memory datasets (MNIST family, CIFAR) as numpy arrays: from a directory, the
OS-installed copy, or keras.datasets (download and cache)."""

import os
import pickle

import numpy as np

from approxtrain.data.idx import find_file, read_idx

# (images, labels) IDX file stems per split; both naming styles MNIST mirrors use.
_IDX_STEMS = {
    "train": (
        ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
        ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    ),
    "test": (
        ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
        ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
    ),
}
_CIFAR_DIRS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


class Arrays:
    """x_train (N, H, W, C) uint8, y_train (N,) int64, x_test, y_test, and where they came from."""

    def __init__(self, x_train, y_train, x_test, y_test, source):
        self.x_train, self.y_train, self.x_test, self.y_test = x_train, y_train, x_test, y_test
        self.source = source


def load_arrays(spec, data_dir=None):
    if data_dir is not None:
        arrays = _from_dir(spec, data_dir)
    elif spec.system_dir and os.path.isdir(spec.system_dir):
        arrays = _from_dir(spec, spec.system_dir)
    else:
        arrays = _from_keras(spec)
    _check(spec, arrays)
    return arrays


def _from_dir(spec, data_dir):
    if not os.path.isdir(data_dir) and not data_dir.endswith(".npz"):
        raise FileNotFoundError(f"data directory {data_dir!r} does not exist; {spec.how_to_get}")
    npz = data_dir if data_dir.endswith(".npz") else _find_npz(spec, data_dir)
    if npz:
        return _from_npz(npz)
    if spec.kind == "idx":
        found = _idx_dir(spec, data_dir)
    else:
        found = _cifar_dir(spec, data_dir)
    if found is None:
        raise FileNotFoundError(f"no {spec.name} files found in {data_dir!r}; {spec.how_to_get}")
    return found


def _find_npz(spec, data_dir):
    for name in (f"{spec.name}.npz", f"{spec.keras_name}.npz"):
        path = os.path.join(data_dir, name)
        if os.path.isfile(path):
            return path
    return None


def _from_npz(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path!r} does not exist")
    keys = ("x_train", "y_train", "x_test", "y_test")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in keys if k not in f.files]
            parts = None if missing else [f[k] for k in keys]
    except Exception as e:  # noqa: BLE001 - bad zip, truncated member, not an npz: name the file
        raise ValueError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from None
    if missing:
        raise ValueError(f"{path}: missing array(s) {', '.join(missing)} (needs {', '.join(keys)})")
    return Arrays(*parts, source=path)


def _idx_dir(spec, data_dir):
    paths = {split: [find_file(data_dir, stems) for stems in pair] for split, pair in _IDX_STEMS.items()}
    found = [p for pair in paths.values() for p in pair]
    if not any(found):
        return None
    if not all(found):
        all_stems = [stems for pair in _IDX_STEMS.values() for stems in pair]
        missing = [stems[0] for stems, path in zip(all_stems, found) if path is None]
        raise FileNotFoundError(f"{data_dir!r} lacks {', '.join(m + '[.gz]' for m in missing)}; {spec.how_to_get}")
    split = {}
    for name, (images, labels) in paths.items():
        x, y = read_idx(images, expected_ndim=3), read_idx(labels, expected_ndim=1)
        if len(x) != len(y):
            raise ValueError(f"{images} holds {len(x)} images but {labels} holds {len(y)} labels")
        split[name] = (x, y)
    return Arrays(*split["train"], *split["test"], source=data_dir)


def _cifar_dir(spec, data_dir):
    sub = os.path.join(data_dir, _CIFAR_DIRS[spec.name])
    root = sub if os.path.isdir(sub) else data_dir
    if spec.name == "cifar10":
        train_files = [f"data_batch_{i}" for i in range(1, 6)]
        test_files, label_key = ["test_batch"], b"labels"
    else:
        train_files, test_files, label_key = ["train"], ["test"], b"fine_labels"
    present = [os.path.isfile(os.path.join(root, f)) for f in train_files + test_files]
    if not any(present):
        return None
    if not all(present):
        missing = [f for f, p in zip(train_files + test_files, present) if not p]
        raise FileNotFoundError(f"{root!r} lacks {', '.join(missing)}; {spec.how_to_get}")
    x_train, y_train = _cifar_batches(root, train_files, label_key)
    x_test, y_test = _cifar_batches(root, test_files, label_key)
    return Arrays(x_train, y_train, x_test, y_test, source=root)


def _cifar_batches(root, files, label_key):
    xs, ys = [], []
    for name in files:
        path = os.path.join(root, name)
        try:
            with open(path, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
            data, labels = np.asarray(batch[b"data"], np.uint8), np.asarray(batch[label_key])
        except Exception as e:  # noqa: BLE001 - any unpickling failure: name the file
            raise ValueError(f"{path}: not a CIFAR python batch file ({type(e).__name__}: {e})") from None
        if data.ndim != 2 or data.shape[1] != 3072:
            raise ValueError(f"{path}: expected data of shape (N, 3072), found {data.shape}")
        if len(data) != len(labels):
            raise ValueError(f"{path}: {len(data)} images but {len(labels)} labels")
        xs.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))  # stored channels-first
        ys.append(labels)
    return np.concatenate(xs), np.concatenate(ys)


def _from_keras(spec):
    import keras

    loader = getattr(keras.datasets, spec.keras_name)
    try:
        (x_train, y_train), (x_test, y_test) = loader.load_data()
    except Exception as e:  # noqa: BLE001 - network and cache failures alike
        raise RuntimeError(
            f"could not get {spec.name} through keras.datasets ({type(e).__name__}: {e}); {spec.how_to_get}"
        ) from None
    return Arrays(x_train, y_train, x_test, y_test, source=f"keras.datasets.{spec.keras_name}")


def _check(spec, arrays):
    """Shapes and labels as the spec says; MNIST-style (N, H, W) images gain a channel axis."""
    for split in ("train", "test"):
        x, y = getattr(arrays, f"x_{split}"), np.asarray(getattr(arrays, f"y_{split}"))
        if x.ndim == 3:
            x = x[..., None]
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if x.shape[1:] != spec.image_shape:
            raise ValueError(
                f"{arrays.source}: {split} images have shape {x.shape[1:]}, {spec.name} needs {spec.image_shape}"
            )
        if y.ndim != 1 or len(y) != len(x):
            raise ValueError(f"{arrays.source}: {len(x)} {split} images but labels of shape {y.shape}")
        if len(y) == 0:
            raise ValueError(f"{arrays.source}: the {split} split is empty")
        if y.min() < 0 or y.max() >= spec.num_classes:
            raise ValueError(
                f"{arrays.source}: {split} labels must lie in [0, {spec.num_classes}), found [{y.min()}, {y.max()}]"
            )
        if x.dtype != np.uint8:
            raise ValueError(f"{arrays.source}: {split} images must be uint8, found {x.dtype}")
        setattr(arrays, f"x_{split}", x)
        setattr(arrays, f"y_{split}", y.astype(np.int64))
