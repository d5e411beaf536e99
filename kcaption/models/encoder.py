"""The image encoder: pixels in [0, 1] -> pooled (N, C) and spatial (N, L, C) features."""

import math
import os
from pathlib import Path

import keras
from keras import ops

from kcaption.errors import MissingFileError

# name -> (constructor, preprocessing of images in [0, 255], the ImageNet weights without the top:
# the URL keras.applications downloads; it keeps the file as ~/.keras/models/<its last part>).
BACKBONES = {
    "mobilenet_v3_small": (
        "MobileNetV3Small",
        None,  # rescales inside the model
        "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v3/"
        "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
    ),
    "efficientnet_b0": (
        "EfficientNetB0",
        None,  # rescales inside the model
        "https://storage.googleapis.com/keras-applications/efficientnetb0_notop.h5",
    ),
    "resnet50": (
        "ResNet50",
        keras.applications.resnet50.preprocess_input,
        "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
}


@keras.saving.register_keras_serializable(package="kcaption")
class ImageEncoder(keras.layers.Layer):
    """Encodes images into a feature vector and a grid of feature vectors.

    Two kinds of encoder:
    - `"small_cnn"` (default): four strided convolutions (6x6, then 3x3) trained from
      scratch with the captioner, on images minus their mean colour. No download, fast on a CPU, right for the
      shapes data. It also sees each pixel's coordinates, so its features
      (averaged over the grid) keep *where* things are.
    - a frozen `keras.applications` backbone, `"mobilenet_v3_small"`,
      `"efficientnet_b0"` or `"resnet50"`; its pooled vector is the global
      average of its last feature map. With `weights="imagenet"` Keras
      downloads the weights once into `~/.keras/models/`; when it cannot (no
      internet) the encoder raises a `MissingFileError` naming the file to put
      there, rather than train random weights. `weights=None` runs the same
      frozen path with random weights (the tests, and runs without the file),
      their batch-norm statistics set so that features keep a unit scale.

    Args:
        backbone: "small_cnn" or one of `BACKBONES`.
        image_size: side S of the square input images.
        weights: "imagenet" or None (backbones only).
        feature_dim: channels C of the small CNN's last layer (its feature size).
        frozen: whether the backbone's weights stay fixed; default True (for
            random weights too: features cached from them stay valid).
        pool_norm: the small CNN standardises its pooled vector with a
            `BatchNormalization` (see `call`). A captioner that reads only the
            grid (attention, Transformer) passes False: the pooled vector is then
            the plain mean, and no weights are built that would never train.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        images: float (N, S, S, 3) in [0, 1].
        training: passed to the small CNN; a frozen backbone always runs in inference mode.

    Returns:
        `(pooled, spatial)`: (N, C) and (N, L, C'), L the number of grid cells.

    Example:
        >>> pooled, spatial = ImageEncoder()(np.zeros((2, 64, 64, 3), "float32"))
        >>> pooled.shape, spatial.shape
        (TensorShape([2, 128]), TensorShape([2, 16, 128]))

    References:
        Show and Tell (Vinyals et al., 2015); Show, Attend and Tell (Xu et al., 2015).
    """

    def __init__(
        self, backbone="small_cnn", image_size=64, weights="imagenet", feature_dim=128, frozen=None, pool_norm=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if backbone != "small_cnn" and backbone not in BACKBONES:
            raise ValueError(
                f"`backbone` must be 'small_cnn' or one of {sorted(BACKBONES)}. Received: backbone={backbone!r}"
            )
        if weights not in ("imagenet", None):
            raise ValueError(f"`weights` must be 'imagenet' or None. Received: weights={weights!r}")
        self.backbone = backbone
        self.image_size = image_size
        self.weights_source = weights
        self.feature_dim = feature_dim
        self.frozen = False
        self.pool_norm = None
        if backbone == "small_cnn":
            # Strided convolutions, each halving the grid: (S/16)^2 cells. The first one
            # sees 6x6 pixels: a probe that predicts an image's coloured shapes from the
            # pooled vector got 40% of held-out images exactly right after 1,500 steps
            # with a 3x3 first layer, 74% with 5x5 and 84% with 6x6.
            self.convs = [
                keras.layers.Conv2D(filters, size, strides=2, padding="same", activation="gelu", name=f"conv{i}")
                for i, (filters, size) in enumerate([(16, 6), (32, 3), (64, 3), (feature_dim, 3)])
            ]
            # Standardise each feature over the batch: what differs between images
            # (colours, shapes, places) stands out from what they share (background).
            if pool_norm:
                self.pool_norm = keras.layers.BatchNormalization(momentum=0.9, name="pool_norm")
        else:
            self.network = self._backbone(backbone, image_size, weights)
            self.frozen = True if frozen is None else bool(frozen)
            self.network.trainable = not self.frozen

    @staticmethod
    def _backbone(name, image_size, weights):
        constructor_name, preprocess, url = BACKBONES[name]
        constructor = getattr(keras.applications, constructor_name)
        shape = (image_size, image_size, 3)
        if weights is None:
            network = constructor(include_top=False, weights=None, input_shape=shape)
            _standardise(network, preprocess, image_size)
            return network
        try:
            return constructor(include_top=False, weights=weights, input_shape=shape)
        except Exception as error:  # no internet, a proxy, a corrupt download ...
            path = weights_path(name)
            raise MissingFileError(
                f"Could not load the ImageNet weights of {name} ({type(error).__name__}: {str(error)[:200]}). "
                f"Put the file {path.name} (from {url}) at {path}, or pass weights=None "
                "(kcaption: --weights none) to run the same frozen path with random weights."
            ) from error

    def build(self, input_shape):
        if self.backbone == "small_cnn":
            shape = (*input_shape[:-1], 5)  # + 2 coordinate channels
            for conv in self.convs:
                conv.build(shape)
                shape = conv.compute_output_shape(shape)
            if self.pool_norm is not None:
                self.pool_norm.build((input_shape[0], shape[-1]))

    def call(self, images, training=None):
        if self.backbone == "small_cnn":
            # Subtract each image's mean colour (its background), so the shapes stand out,
            # and add two channels with each pixel's x and y in [-1, 1] ("CoordConv", Liu
            # et al. 2018), so that features can say *where* a shape is.
            x = images - ops.mean(images, axis=(1, 2), keepdims=True)  # (N, S, S, 3)
            x = ops.concatenate([x, self._coordinates(images)], axis=-1)  # (N, S, S, 5)
            for conv in self.convs:
                x = conv(x)  # (N, S/2^k, S/2^k, filters)
            _, height, width, channels = x.shape
            grid = ops.reshape(x, (-1, height * width, channels))  # (N, L, C')
            pooled = ops.mean(grid, axis=1)  # (N, C)
            if self.pool_norm is not None:
                pooled = self.pool_norm(pooled, training=training)
            return pooled, grid
        preprocess = BACKBONES[self.backbone][1]
        x = images * 255.0
        if preprocess is not None:
            x = preprocess(x)
        x = self.network(x, training=False if self.frozen else training)  # (N, h, w, C)
        _, height, width, channels = x.shape
        grid = ops.reshape(x, (-1, height * width, channels))  # (N, L, C)
        return ops.mean(grid, axis=1), grid

    @staticmethod
    def _coordinates(images):
        """(N, S, S, 2): x and y of every pixel, from -1 (left, top) to 1."""
        size = images.shape[1]
        ramp = ops.linspace(-1.0, 1.0, size)
        xy = ops.stack(ops.meshgrid(ramp, ramp, indexing="xy"), axis=-1)  # (S, S, 2)
        return ops.zeros_like(images[..., :2]) + ops.cast(xy, images.dtype)

    def get_config(self):
        # The trained weights (backbone included) are saved with the model, so a
        # reloaded encoder need not download anything: weights=None.
        return {
            **super().get_config(),
            "backbone": self.backbone,
            "image_size": self.image_size,
            "weights": None,
            "feature_dim": self.feature_dim,
            "frozen": self.frozen,
            "pool_norm": self.pool_norm is not None,
        }


def weights_path(backbone):
    """Where keras.applications keeps `backbone`'s ImageNet weights: $KERAS_HOME/models/FILE (~/.keras by default)."""
    home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    return Path(home) / "models" / BACKBONES[backbone][2].rsplit("/", 1)[1]


def _standardise(network, preprocess, image_size):
    """Set a random network's BatchNormalization statistics so that every layer's output has unit variance.

    Keras's random initialisation shrinks the signal layer after layer: MobileNetV3Small's
    features at 64 px are ~1e-10, EfficientNetB0's ~1e-6, below float16's range (a feature
    cache) and alike for every image. One pass in training mode with momentum 0 over a
    fixed probe batch makes each normalisation's moving statistics those of its input on
    that batch, normalised by the layers before it (as LSUV, Mishkin & Matas 2016, does
    layer by layer): the features are then ~1 and differ between images.
    """
    norms = [layer for layer in network._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    x = _probe_images(image_size) * 255.0
    network(x if preprocess is None else preprocess(x), training=True)
    for layer, momentum in zip(norms, momenta, strict=True):
        layer.momentum = momentum


def _probe_images(size, count=8):
    """(count, size, size, 3) fixed images in [0, 1]: stripes and gradients of growing frequency."""
    ramp = ops.linspace(0.0, 1.0, size)
    x, y = ops.meshgrid(ramp, ramp, indexing="xy")  # (S, S) each
    images = []
    for k in range(count):
        f = k + 1.0
        red = 0.5 + 0.5 * ops.sin(2 * math.pi * f * x + k)
        green = 0.5 + 0.5 * ops.cos(2 * math.pi * f * (k % 3 + 1) * y)
        blue = (x * y * f) % 1.0
        images.append(ops.stack([red, green, blue], axis=-1))  # (S, S, 3)
    return ops.stack(images)
