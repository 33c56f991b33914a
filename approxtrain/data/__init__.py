"""Datasets as tf.data pipelines.

    data = approxtrain.data.load("fashion_mnist", batch_size=128, seed=0, subset=5000)
    model.fit(data.train, validation_data=data.test)
    data.info.input_shape, data.info.num_classes

Sources: --data-dir (IDX files, keras' npz/pickle files, or class folders), the
OS-installed Fashion-MNIST (/usr/share/datasets/fashion-mnist), or keras.datasets.
"""

from dataclasses import asdict, dataclass
from typing import NamedTuple

from approxtrain.data import catalog

DEFAULT_IMAGE_SIZE = 224  # class-folder datasets


@dataclass
class DatasetInfo:
    name: str
    input_shape: tuple
    num_classes: int
    num_train: int
    num_test: int
    num_validation: int
    class_names: tuple
    source: str
    augment: bool

    def to_dict(self):
        d = asdict(self)
        d["input_shape"], d["class_names"] = list(self.input_shape), list(self.class_names)
        return d


class Data(NamedTuple):
    train: object  # tf.data.Dataset of (images, labels) batches, shuffled
    test: object  # tf.data.Dataset, not shuffled
    info: DatasetInfo
    validation: object  # tf.data.Dataset held out from train, or None


def names():
    return list(catalog.SPECS)


def load(
    name,
    data_dir=None,
    batch_size=128,
    seed=0,
    validation=0.0,
    subset=None,
    test_subset=None,
    augment=None,
    image_size=None,
):
    """Loads dataset `name` and returns Data(train, test, info, validation).

    subset / test_subset: keep the first N training / test examples (smoke runs).
    validation: fraction of the (subset) training examples held out, taken from its end.
    augment: None means the dataset's standard augmentation (CIFAR and class folders:
    random crop + horizontal flip; MNIST family: none).
    image_size: side of the square images of class-folder datasets (default 224).
    """
    spec = catalog.get(name)
    batch_size = _positive_int("batch_size", batch_size)
    subset = None if subset is None else _positive_int("subset", subset)
    test_subset = None if test_subset is None else _positive_int("test_subset", test_subset)
    if not isinstance(validation, (int, float)) or not 0.0 <= validation < 1.0:
        raise ValueError(f"validation must be a fraction in [0, 1), got {validation!r}")
    if image_size is not None and spec.kind != "folder":
        raise ValueError(f"image_size applies to class-folder datasets only, not {name!r}")
    augment = spec.augment if augment is None else bool(augment)
    data_dir = None if data_dir is None else str(data_dir)

    from approxtrain.data import pipeline

    if spec.kind == "folder":
        from approxtrain.data.folders import list_folders

        size = _positive_int("image_size", image_size or DEFAULT_IMAGE_SIZE)
        listing = list_folders(spec, data_dir)
        train, val, test = _split(listing.train, listing.test, subset, test_subset, validation)

        def make(part, training):
            return pipeline.from_files(*part, spec, size, batch_size, seed, training, augment)

        input_shape, num_classes = (size, size, 3), len(listing.class_names)
        class_names, source = tuple(listing.class_names), listing.source
    else:
        from approxtrain.data.arrays import load_arrays

        arrays = load_arrays(spec, data_dir)
        train, val, test = _split(
            (arrays.x_train, arrays.y_train), (arrays.x_test, arrays.y_test), subset, test_subset, validation
        )

        def make(part, training):
            return pipeline.from_arrays(*part, spec, batch_size, seed, training, augment)

        input_shape, num_classes = spec.image_shape, spec.num_classes
        class_names, source = spec.class_names, arrays.source

    info = DatasetInfo(
        name,
        tuple(input_shape),
        num_classes,
        len(train[0]),
        len(test[0]),
        len(val[0]) if val else 0,
        class_names,
        source,
        augment,
    )
    return Data(make(train, True), make(test, False), info, make(val, False) if val else None)


def _split(train, test, subset, test_subset, validation):
    """First `subset` / `test_subset` examples; the validation fraction from the train end."""
    if subset is not None:
        train = tuple(part[:subset] for part in train)
    if test_subset is not None:
        test = tuple(part[:test_subset] for part in test)
    held_out = int(round(validation * len(train[0])))
    if validation and not 0 < held_out < len(train[0]):
        raise ValueError(
            f"validation fraction {validation} of {len(train[0])} training examples "
            f"leaves no validation or no training examples"
        )
    val = None
    if held_out:
        val = tuple(part[-held_out:] for part in train)
        train = tuple(part[:-held_out] for part in train)
    return train, val, test


def _positive_int(what, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return value


__all__ = ["load", "names", "Data", "DatasetInfo"]
