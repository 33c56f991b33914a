"""tf.data pipelines: normalise, shuffle with a seed, augment, batch, prefetch."""

import tensorflow as tf

CIFAR_PAD = 4  # pixels of zero padding before the random crop


def _options():
    options = tf.data.Options()
    # In-memory tensors and file lists both shard by element under tf.distribute.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


def _normalise(spec):
    mean = tf.constant(spec.mean, tf.float32)
    std = tf.constant(spec.std, tf.float32)
    return lambda x: (tf.cast(x, tf.float32) / 255.0 - mean) / std


def _pad_crop_flip(image, seed):
    """Standard CIFAR augmentation: zero-pad, random crop back to size, random horizontal flip."""
    height, width, channels = image.shape
    padded = tf.pad(image, [[CIFAR_PAD, CIFAR_PAD], [CIFAR_PAD, CIFAR_PAD], [0, 0]])
    image = tf.image.random_crop(padded, (height, width, channels), seed=seed)
    return tf.image.random_flip_left_right(image, seed=seed)


def from_arrays(x, y, spec, batch_size, seed, training, augment):
    normalise = _normalise(spec)
    ds = tf.data.Dataset.from_tensor_slices((x, y.astype("int32")))
    if training:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    if training and augment:
        ds = ds.map(lambda i, t: (_pad_crop_flip(i, seed), t), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size).map(lambda i, t: (normalise(i), t), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE).with_options(_options())


def from_files(paths, labels, spec, image_size, batch_size, seed, training, augment):
    """Decodes images, resizes to image_size*8/7 and crops image_size (random when training
    with augmentation, central otherwise); random horizontal flips when augmenting."""
    normalise = _normalise(spec)
    larger = int(round(image_size * 8 / 7))

    def load(path, label):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        image = tf.image.resize(image, (larger, larger))
        if training and augment:
            image = tf.image.random_crop(image, (image_size, image_size, 3), seed=seed)
            image = tf.image.random_flip_left_right(image, seed=seed)
        else:
            offset = (larger - image_size) // 2
            image = image[offset : offset + image_size, offset : offset + image_size]
        return normalise(image), label

    ds = tf.data.Dataset.from_tensor_slices((list(paths), list(labels)))
    if training:
        ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)
    return ds.prefetch(tf.data.AUTOTUNE).with_options(_options())
