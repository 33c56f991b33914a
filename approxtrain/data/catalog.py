"""What the loader knows about each dataset: shapes, classes, statistics, where to find it."""

from dataclasses import dataclass, field

FASHION_MNIST_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"  # Debian: dataset-fashion-mnist


@dataclass(frozen=True)
class Spec:
    name: str
    kind: str  # "idx" (MNIST family), "cifar" or "folder"
    num_classes: int | None  # None: taken from the class folders
    image_shape: tuple | None  # (H, W, C); None: chosen by image_size for folders
    mean: tuple  # per channel, of pixels scaled to [0, 1]
    std: tuple
    augment: bool  # standard augmentation on by default
    keras_name: str | None = None  # keras.datasets module that downloads it
    system_dir: str | None = None  # offline copy installed by the OS
    how_to_get: str = ""
    class_names: tuple = field(default=())


_FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_IDX_FILES = (
    "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
    "t10k-labels-idx1-ubyte.gz (gzip or raw)"
)
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

SPECS = {
    "mnist": Spec(
        "mnist",
        "idx",
        10,
        (28, 28, 1),
        (0.1307,),
        (0.3081,),
        False,
        keras_name="mnist",
        how_to_get=f"it is downloaded by keras.datasets.mnist when online; offline pass --data-dir DIR "
        f"holding {_IDX_FILES} or keras' mnist.npz",
        class_names=tuple(str(i) for i in range(10)),
    ),
    "fashion_mnist": Spec(
        "fashion_mnist",
        "idx",
        10,
        (28, 28, 1),
        (0.2860,),
        (0.3530,),
        False,
        keras_name="fashion_mnist",
        system_dir=FASHION_MNIST_SYSTEM_DIR,
        how_to_get=f"install it with `apt-get install dataset-fashion-mnist` (files under "
        f"{FASHION_MNIST_SYSTEM_DIR}), let keras.datasets download it, or pass --data-dir DIR "
        f"holding {_IDX_FILES}",
        class_names=_FASHION_CLASSES,
    ),
    "cifar10": Spec(
        "cifar10",
        "cifar",
        10,
        (32, 32, 3),
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
        True,
        keras_name="cifar10",
        how_to_get="it is downloaded by keras.datasets.cifar10 when online; offline pass --data-dir DIR "
        "holding the extracted cifar-10-batches-py/ (data_batch_1..5, test_batch) or "
        "cifar10.npz with x_train, y_train, x_test, y_test",
        class_names=_CIFAR10_CLASSES,
    ),
    "cifar100": Spec(
        "cifar100",
        "cifar",
        100,
        (32, 32, 3),
        (0.5071, 0.4865, 0.4409),
        (0.2673, 0.2564, 0.2762),
        True,
        keras_name="cifar100",
        how_to_get="it is downloaded by keras.datasets.cifar100 when online; offline pass --data-dir DIR "
        "holding the extracted cifar-100-python/ (train, test) or cifar100.npz with "
        "x_train, y_train, x_test, y_test",
    ),
    "imagenet": Spec(
        "imagenet",
        "folder",
        None,
        None,
        _IMAGENET_MEAN,
        _IMAGENET_STD,
        True,
        how_to_get="pass --data-dir DIR with DIR/train/<class>/*.jpg and DIR/val/<class>/*.jpg "
        "(ImageNet-style class folders; 'test' or 'validation' also work for val)",
    ),
    "image_folder": Spec(
        "image_folder",
        "folder",
        None,
        None,
        _IMAGENET_MEAN,
        _IMAGENET_STD,
        True,
        how_to_get="pass --data-dir DIR with DIR/train/<class>/<images> and DIR/test/<class>/<images> "
        "('val' or 'validation' also work for test)",
    ),
}


def get(name):
    try:
        return SPECS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(SPECS)}") from None
