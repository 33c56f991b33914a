"""ImageNet-style class-folder datasets: ROOT/<split>/<class>/<image>; listing only (no TF)."""

import itertools
import os

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
TRAIN_SPLITS = ("train",)
TEST_SPLITS = ("val", "test", "validation")


class FolderListing:
    """Paths and integer labels of both splits, classes numbered in sorted order of train/."""

    def __init__(self, class_names, train, test, source):
        self.class_names = class_names
        self.train = train  # (paths, labels)
        self.test = test
        self.source = source


def list_folders(spec, data_dir):
    if data_dir is None:
        raise ValueError(f"dataset {spec.name!r} needs --data-dir; {spec.how_to_get}")
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"data directory {data_dir!r} does not exist; {spec.how_to_get}")
    train_dir = _split_dir(data_dir, TRAIN_SPLITS, spec)
    test_dir = _split_dir(data_dir, TEST_SPLITS, spec)
    class_names = sorted(d.name for d in os.scandir(train_dir) if d.is_dir())
    if len(class_names) < 2:
        raise ValueError(f"{train_dir} must hold one sub-folder per class (at least 2), found {len(class_names)}")
    train = _list_images(train_dir, class_names, spec)
    test_classes = sorted(d.name for d in os.scandir(test_dir) if d.is_dir())
    unknown = sorted(set(test_classes) - set(class_names))
    if unknown:
        raise ValueError(f"{test_dir} has class folder(s) {', '.join(unknown[:5])} that {train_dir} lacks")
    test = _list_images(test_dir, class_names, spec, only=test_classes)
    return FolderListing(class_names, train, test, source=data_dir)


def _split_dir(data_dir, candidates, spec):
    for name in candidates:
        path = os.path.join(data_dir, name)
        if os.path.isdir(path):
            return path
    raise FileNotFoundError(f"{data_dir!r} has no {' or '.join(c + '/' for c in candidates)} folder; {spec.how_to_get}")


def _list_images(split_dir, class_names, spec, only=None):
    per_class = []
    for label, name in enumerate(class_names):
        if only is not None and name not in only:
            continue
        folder = os.path.join(split_dir, name)
        files = sorted(e for e in os.listdir(folder) if e.lower().endswith(IMAGE_EXTENSIONS))
        per_class.append([(os.path.join(folder, f), label) for f in files])
    # Round-robin over classes, so that the first N examples (subset=N) cover every class.
    ordered = [item for rank in itertools.zip_longest(*per_class) for item in rank if item]
    paths, labels = [p for p, _ in ordered], [label for _, label in ordered]
    if not paths:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {split_dir}; {spec.how_to_get}")
    return paths, labels
