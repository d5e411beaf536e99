"""kcaption: build an image captioner from scratch in Keras 3, then train it for real.

The package is laid out in the order the data flows:
data -> models.encoder -> layers -> models (captioners) -> train -> decoding -> metrics/viz,
with the graded-step registry (`kcaption.steps`) and the autograder (`kcaption.grading`) beside it.

`kcaption.quiet_tensorflow()` imports TensorFlow without its C++ start-up lines
(call it first in a notebook; see `kcaption.quiet`). Importing `kcaption`
itself does not import TensorFlow.
"""

from kcaption.quiet import quiet_tensorflow

__version__ = "0.1.0"
__all__ = ["quiet_tensorflow"]
