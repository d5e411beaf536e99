"""Tokenization: lower-case a caption and split punctuation off its words.

Two implementations that give the same tokens: `tokenize` (plain Python, used
to build vocabularies and encode captions) and `tf_tokenize` (TensorFlow Text,
usable inside a `tf.data` pipeline or a model). A word is a run of letters,
digits and underscores; every other non-space character is a token of its own.

    >>> tokenize("A dog, running.")
    ['a', 'dog', ',', 'running', '.']
"""

import re

# Python's \w is Unicode letters, digits and "_"; RE2 spells the same set \pL\pN_.
_TOKEN = re.compile(r"\w+|[^\w\s]")
_DELIMITER_RE2 = r"\s+|[^\pL\pN_\s]"
_KEEP_RE2 = r"[^\pL\pN_\s]"


def tokenize(text):
    """Split a caption into lower-case tokens (Python).

    Args:
        text: a caption, e.g. "A dog, running."

    Returns:
        A list of str, e.g. ['a', 'dog', ',', 'running', '.'].
    """
    if not isinstance(text, str):
        raise TypeError(f"tokenize expects a str. Received: text={text!r}")
    return _TOKEN.findall(text.lower())


def tf_tokenize(strings):
    """Split a batch of captions into lower-case tokens (TensorFlow Text).

    Gives the same tokens as `tokenize`, as UTF-8 bytes.

    Args:
        strings: a string `tf.Tensor` of shape (N,) (or a list of str).

    Returns:
        A `tf.RaggedTensor` of strings, shape (N, None).
    """
    import tensorflow as tf
    import tensorflow_text as tf_text

    lowered = tf.strings.lower(tf.convert_to_tensor(strings, dtype=tf.string), encoding="utf-8")
    return tf_text.regex_split(lowered, _DELIMITER_RE2, _KEEP_RE2)
