"""Mixed precision: every captioner trains under each dtype policy, with float32 variables, logits and loss."""

import keras
import numpy as np
import pytest

from kcaption.data import Vocabulary, load_shapes, make_dataset
from kcaption.distribute import PRECISIONS, set_precision
from kcaption.errors import InputError
from kcaption.losses import TemporalSoftmaxLoss
from kcaption.models import build_captioner

IMAGE_SIZE = 32  # the shapes data's smallest images: a 2 x 2 grid after the small CNN
# Step 0's loss under a mixed policy vs float32, same weights: the loss is a sum of T = 16
# cross-entropies of ~3.4 each; float16's rounding (2^-11 relative) on activations of O(1)
# moves the logits by ~1e-3, bfloat16's (2^-8) by ~1e-2, each loss term by about as much.
LOSS_TOLERANCE = {"mixed_float16": 2e-3, "mixed_bfloat16": 1e-2}


@pytest.fixture(scope="module")
def shapes():
    records = load_shapes("train", n=8, image_size=IMAGE_SIZE)
    vocab = Vocabulary.build(c for r in records for c in r.captions)
    data = make_dataset(records, vocab, batch_size=4, image_size=IMAGE_SIZE, captions="grouped", seed=0,
                        too_long="skip")
    return vocab, data.take(2).cache()  # two grouped batches, the same every epoch


@pytest.fixture
def policy():
    """Set a precision for the test, and back to float32 after it."""
    yield set_precision
    set_precision("float32")


def captioner(name, vocab):
    size = {"num_layers": 1} if name == "transformer" else {}
    model = build_captioner(name, len(vocab), image_size=IMAGE_SIZE, embed_dim=8, hidden_dim=8, **size)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=TemporalSoftmaxLoss(), jit_compile=False)
    return model


def first_loss(model, batch):
    (images, captions_in), captions_out = batch
    logits = model((images, captions_in[:, 0]), training=False)
    return logits, float(TemporalSoftmaxLoss()(captions_out[:, 0], logits))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["rnn", "lstm", "attn", "transformer"])
def test_each_captioner_trains_under_each_policy_with_float32_variables_logits_and_loss(name, shapes, policy):
    vocab, data = shapes
    batch = next(iter(data))
    reference = captioner(name, vocab)
    _, reference_loss = first_loss(reference, batch)
    for precision in PRECISIONS[1:]:
        policy(precision)
        model = captioner(name, vocab)
        first_loss(model, batch)  # builds it
        model.set_weights(reference.get_weights())
        logits, loss = first_loss(model, batch)
        assert logits.dtype == "float32", f"{name} under {precision}: logits are {logits.dtype}, not float32"
        assert loss == pytest.approx(reference_loss, rel=LOSS_TOLERANCE[precision]), (
            f"{name} under {precision}: step 0's loss is {loss}, float32's {reference_loss} for the same weights"
        )
        computed = {layer.dtype_policy.compute_dtype for layer in model._flatten_layers()}
        assert precision.split("_")[1] in computed, f"{name} under {precision}: the layers compute in {computed}"
        expected = "LossScaleOptimizer" if precision == "mixed_float16" else "Adam"
        assert type(model.optimizer).__name__ == expected
        history = model.fit(data, epochs=1, verbose=0).history["loss"]
        assert np.all(np.isfinite(history)), f"{name} under {precision}: losses {history}"
        floats = {v.path: v.dtype for v in model.variables if "float" in v.dtype}
        assert set(floats.values()) == {"float32"}, f"{name} under {precision}: variables not in float32: {floats}"
        assert not np.allclose(model.get_weights()[0], reference.get_weights()[0]), "the weights did not train"


def test_set_precision_refuses_an_unknown_policy():
    with pytest.raises(InputError, match="Received: precision='float16'"):
        set_precision("float16")
