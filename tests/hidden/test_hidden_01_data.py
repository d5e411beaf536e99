"""Hidden tests for lesson 01: decode_captions on the edge cases."""

import numpy as np
import pytest
import tensorflow as tf

from kcaption.data import SPECIAL_TOKENS, Vocabulary, decode_captions
from kcaption.testing import plain_captions


@pytest.fixture
def vocab():
    """ids: <NULL>=0 <START>=1 <END>=2 <UNK>=3 a=4 dog=5 on=6 grass=7."""
    return Vocabulary([*SPECIAL_TOKENS, "a", "dog", "on", "grass"])


def decode(ids, words):
    """Scenario: decode_captions(ids, Vocabulary(words)) (ids: an array or a plain list)."""
    return plain_captions(decode_captions(ids, Vocabulary(words)))


def decode_tensor(ids, words):
    """Scenario: decode_captions on a tf.Tensor of the ids (same dtype)."""
    return plain_captions(decode_captions(tf.constant(ids), Vocabulary(words)))


def decode_types(ids, words):
    """Scenario: the types decode_captions returns (the list, its first item)."""
    got = decode_captions(ids, Vocabulary(words))
    return repr(type(got)), repr(type(got[0]))


@pytest.mark.step("data.decode_captions")
def test_one_row_batch_gives_a_list_of_one(student, vocab):
    got = student.run(decode, np.array([[1, 4, 5, 2]]), vocab.words)
    assert got == ["a dog"], f"(1, T) ids should give a list with one caption; got {got!r}."


@pytest.mark.step("data.decode_captions")
def test_one_time_step(student, vocab):
    assert student.run(decode, np.array([[5], [2], [0]]), vocab.words) == ["dog", "", ""]
    assert student.run(decode, np.array([7]), vocab.words) == "grass"


@pytest.mark.step("data.decode_captions")
def test_all_padding_gives_empty_strings(student, vocab):
    assert student.run(decode, np.zeros((3, 6), dtype=np.int32), vocab.words) == ["", "", ""]


@pytest.mark.step("data.decode_captions")
def test_end_first_gives_an_empty_caption(student, vocab):
    got = student.run(decode, np.array([[2, 4, 5, 6, 7], [1, 2, 4, 5, 2]]), vocab.words)
    assert got == ["", ""], f"Everything after the first <END> is dropped; got {got!r}."


@pytest.mark.step("data.decode_captions")
def test_without_end_every_word_is_kept(student, vocab):
    assert student.run(decode, np.array([[1, 4, 5, 6, 4, 7]]), vocab.words) == ["a dog on a grass"]


@pytest.mark.step("data.decode_captions")
def test_tensorflow_and_int64_ids(student, vocab):
    ids = [[1, 4, 5, 6, 7, 2, 0], [1, 5, 3, 2, 0, 0, 0]]
    expected = ["a dog on grass", "dog <UNK>"]
    assert student.run(decode_tensor, np.array(ids, dtype=np.int32), vocab.words) == expected
    assert student.run(decode, np.array(ids, dtype=np.int64), vocab.words) == expected
    assert student.run(decode_tensor, np.array(ids[0], dtype=np.int64), vocab.words) == expected[0]
    assert student.run(decode, ids, vocab.words) == expected  # a plain list


@pytest.mark.step("data.decode_captions")
def test_returns_python_strings(student, vocab):
    got_type, item_type = student.run(decode_types, np.array([[1, 4, 2]], dtype=np.uint8), vocab.words)
    assert got_type == repr(list) and item_type == repr(str), (
        f"Return a list of str; got {got_type} of {item_type}."
    )
