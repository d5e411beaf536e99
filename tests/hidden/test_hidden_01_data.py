"""Hidden tests for lesson 01: decode_captions on the edge cases."""

import numpy as np
import pytest
import tensorflow as tf

from kcaption.data import SPECIAL_TOKENS, Vocabulary, decode_captions


@pytest.fixture
def vocab():
    """ids: <NULL>=0 <START>=1 <END>=2 <UNK>=3 a=4 dog=5 on=6 grass=7."""
    return Vocabulary([*SPECIAL_TOKENS, "a", "dog", "on", "grass"])


@pytest.mark.step("data.decode_captions")
def test_one_row_batch_gives_a_list_of_one(vocab):
    got = decode_captions(np.array([[1, 4, 5, 2]]), vocab)
    assert got == ["a dog"], f"(1, T) ids should give a list with one caption; got {got!r}."


@pytest.mark.step("data.decode_captions")
def test_one_time_step(vocab):
    assert decode_captions(np.array([[5], [2], [0]]), vocab) == ["dog", "", ""]
    assert decode_captions(np.array([7]), vocab) == "grass"


@pytest.mark.step("data.decode_captions")
def test_all_padding_gives_empty_strings(vocab):
    assert decode_captions(np.zeros((3, 6), dtype=np.int32), vocab) == ["", "", ""]


@pytest.mark.step("data.decode_captions")
def test_end_first_gives_an_empty_caption(vocab):
    got = decode_captions(np.array([[2, 4, 5, 6, 7], [1, 2, 4, 5, 2]]), vocab)
    assert got == ["", ""], f"Everything after the first <END> is dropped; got {got!r}."


@pytest.mark.step("data.decode_captions")
def test_without_end_every_word_is_kept(vocab):
    assert decode_captions(np.array([[1, 4, 5, 6, 4, 7]]), vocab) == ["a dog on a grass"]


@pytest.mark.step("data.decode_captions")
def test_tensorflow_and_int64_ids(vocab):
    ids = [[1, 4, 5, 6, 7, 2, 0], [1, 5, 3, 2, 0, 0, 0]]
    expected = ["a dog on grass", "dog <UNK>"]
    assert decode_captions(tf.constant(ids, dtype=tf.int32), vocab) == expected
    assert decode_captions(np.array(ids, dtype=np.int64), vocab) == expected
    assert decode_captions(tf.constant(ids[0], dtype=tf.int64), vocab) == expected[0]
    assert decode_captions(ids, vocab) == expected  # a plain list


@pytest.mark.step("data.decode_captions")
def test_returns_python_strings(vocab):
    got = decode_captions(np.array([[1, 4, 2]], dtype=np.uint8), vocab)
    assert type(got) is list and type(got[0]) is str, (
        f"Return a list of str; got {type(got)} of {type(got[0])}."
    )
