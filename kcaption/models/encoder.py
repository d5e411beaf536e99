"""The image encoder: pixels in [0, 1] -> pooled (N, C) and spatial (N, L, C) features."""

import warnings

import keras
from keras import ops

# name -> (constructor, preprocessing of images in [0, 255])
BACKBONES = {
    "mobilenet_v3_small": ("MobileNetV3Small", None),  # rescales inside the model
    "efficientnet_b0": ("EfficientNetB0", None),  # rescales inside the model
    "resnet50": ("ResNet50", keras.applications.resnet50.preprocess_input),
}


@keras.saving.register_keras_serializable(package="kcaption")
class ImageEncoder(keras.layers.Layer):
    """Encodes images into a feature vector and a grid of feature vectors.

    Two kinds of encoder:
    - `"small_cnn"` (default): four strided 3x3 convolutions trained from
      scratch with the captioner. No download, fast on a CPU, right for the
      shapes data. Its pooled vector is a dense layer over the whole grid, so
      it keeps *where* things are ("to the left of").
    - a frozen `keras.applications` backbone, `"mobilenet_v3_small"`,
      `"efficientnet_b0"` or `"resnet50"`, with `weights="imagenet"`; its
      pooled vector is the global average of its last feature map. When the
      ImageNet weights cannot be downloaded (no internet), the encoder warns
      and falls back to random weights, trained with the captioner (slow and
      much weaker: put the weights file in `~/.keras/models/` to use them offline).

    Args:
        backbone: "small_cnn" or one of `BACKBONES`.
        image_size: side S of the square input images.
        weights: "imagenet" or None (backbones only).
        feature_dim: size C of the small CNN's pooled vector.
        frozen: whether the backbone's weights stay fixed; default: frozen exactly
            when the ImageNet weights were loaded.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        images: float (N, S, S, 3) in [0, 1].
        training: passed to the small CNN; a frozen backbone always runs in inference mode.

    Returns:
        `(pooled, spatial)`: (N, C) and (N, L, C'), L the number of grid cells.

    Example:
        >>> pooled, spatial = ImageEncoder()(np.zeros((2, 64, 64, 3), "float32"))
        >>> pooled.shape, spatial.shape
        (TensorShape([2, 256]), TensorShape([2, 16, 128]))

    References:
        Show and Tell (Vinyals et al., 2015); Show, Attend and Tell (Xu et al., 2015).
    """

    def __init__(self, backbone="small_cnn", image_size=64, weights="imagenet", feature_dim=256, frozen=None, **kwargs):
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
        if backbone == "small_cnn":
            self.convs = [
                keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu", name=f"conv{i}")
                for i, filters in enumerate([32, 64, 96, 128])
            ]
            self.pool = keras.layers.Dense(feature_dim, activation="relu", name="pool")
        else:
            self.network, loaded = self._backbone(backbone, image_size, weights)
            self.frozen = loaded if frozen is None else bool(frozen)
            self.network.trainable = not self.frozen

    @staticmethod
    def _backbone(name, image_size, weights):
        constructor = getattr(keras.applications, BACKBONES[name][0])
        shape = (image_size, image_size, 3)
        try:
            network = constructor(include_top=False, weights=weights, input_shape=shape)
        except Exception as error:  # no internet, proxy, corrupt cache ...
            if weights is None:
                raise
            warnings.warn(
                f"ImageEncoder: could not load the ImageNet weights of {name} ({error}). "
                "Falling back to random weights, trained with the captioner. To use the "
                "pretrained weights offline, copy the weights file into ~/.keras/models/.",
                stacklevel=3,
            )
            return constructor(include_top=False, weights=None, input_shape=shape), False
        return network, weights is not None

    def call(self, images, training=None):
        if self.backbone == "small_cnn":
            x = images
            for conv in self.convs:
                x = conv(x)  # (N, S/2^k, S/2^k, filters)
            grid = ops.reshape(x, (ops.shape(x)[0], -1, x.shape[-1]))  # (N, L, C')
            pooled = self.pool(ops.reshape(grid, (ops.shape(x)[0], -1)))  # (N, C)
            return pooled, grid
        preprocess = BACKBONES[self.backbone][1]
        x = images * 255.0
        if preprocess is not None:
            x = preprocess(x)
        x = self.network(x, training=False if self.frozen else training)  # (N, h, w, C)
        grid = ops.reshape(x, (ops.shape(x)[0], -1, x.shape[-1]))  # (N, L, C)
        return ops.mean(grid, axis=1), grid

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
        }
