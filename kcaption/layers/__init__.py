"""Decoder building blocks. Each graded layer is a Keras layer students write."""

from kcaption.layers.embedding import WordEmbedding
from kcaption.layers.lstm import LSTMCell
from kcaption.layers.rnn import RNNCell

__all__ = ["LSTMCell", "RNNCell", "WordEmbedding"]
