"""The vocabulary: words <-> integer ids, with the four special tokens.

    id 0 <NULL>   padding after the end of a caption
    id 1 <START>  first token of every encoded caption
    id 2 <END>    last token of every encoded caption
    id 3 <UNK>    any word the vocabulary does not know

A caption of W words encodes to max_length ids: <START>, W word ids, <END>,
then <NULL> padding. So with the default max_length=17 a caption may have at
most 15 words (tokens, counting punctuation).
"""

import collections
import itertools
import json
from pathlib import Path

import numpy as np

from kcaption.data.records import preview
from kcaption.data.tokenize import tokenize
from kcaption.steps import graded

NULL, START, END, UNK = 0, 1, 2, 3
SPECIAL_TOKENS = ("<NULL>", "<START>", "<END>", "<UNK>")


class Vocabulary:
    """A word list: `words[i]` is the word with id i; ids 0-3 are `SPECIAL_TOKENS`.

    Build one from captions with `Vocabulary.build`, or load a saved one.

    Example:
        >>> vocab = Vocabulary.build(["a red circle", "a blue square"])
        >>> vocab.encode("a red square", max_length=6)
        array([1, 4, 7, 8, 2, 0], dtype=int32)
        >>> vocab.decode([1, 4, 7, 8, 2, 0])
        'a red square'
    """

    def __init__(self, words):
        words = list(words)
        if tuple(words[:4]) != SPECIAL_TOKENS:
            raise ValueError(
                f"A vocabulary starts with the special tokens {SPECIAL_TOKENS}. "
                f"Received: words[:4]={words[:4]}"
            )
        if len(set(words)) != len(words):
            repeated = sorted(w for w, n in collections.Counter(words).items() if n > 1)
            raise ValueError(
                f"A vocabulary lists each word once. Received: repeated words {repeated}"
            )
        self.words = words
        self.word_to_id = {word: i for i, word in enumerate(words)}

    @classmethod
    def build(cls, captions, min_count=1):
        """A vocabulary of every word seen at least `min_count` times.

        Words are ordered by count (most frequent first), then alphabetically,
        so the same captions always give the same ids.

        Args:
            captions: an iterable of caption strings.
            min_count: rarer words are left out (they will encode as <UNK>).
        """
        if not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"min_count must be a positive int. Received: min_count={min_count!r}")
        counts = collections.Counter()
        captions = iter(captions)
        while chunk := list(itertools.islice(captions, 4096)):
            counts.update(tokenize("\n".join(chunk)))  # as one at a time, but quicker
        for token in SPECIAL_TOKENS:
            counts.pop(token, None)
        kept = sorted(
            (w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w)
        )
        return cls(SPECIAL_TOKENS + tuple(kept))

    def __len__(self):
        return len(self.words)

    def __repr__(self):
        return f"Vocabulary({len(self)} words: {' '.join(self.words[4:12])} ...)"

    def encode(self, caption, max_length=17):
        """Encode one caption as ids: <START> words <END> <NULL>...

        Args:
            caption: a caption string (tokenized with `tokenize`).
            max_length: the length of the result, <START> and <END> included.

        Returns:
            An int32 array of shape (max_length,). Unknown words become <UNK>.

        Raises:
            ValueError: the caption has more than max_length - 2 tokens (the
                message names it; `make_dataset(too_long="skip")` skips and
                counts such captions instead).
        """
        words = tokenize(caption)
        if len(words) > max_length - 2:
            raise ValueError(
                f"Caption has {len(words)} tokens, more than max_length - 2 = {max_length - 2}: "
                f"{preview(caption)}. Raise max_length or skip long captions. Received: max_length={max_length}"
            )
        ids = np.full((max_length,), NULL, dtype=np.int32)
        ids[0] = START
        ids[1 : len(words) + 1] = [self.word_to_id.get(word, UNK) for word in words]
        ids[len(words) + 1] = END
        return ids

    def unknown_words(self, caption):
        """The words of `caption` that this vocabulary does not know."""
        return [word for word in tokenize(caption) if word not in self.word_to_id]

    def decode(self, ids):
        """Decode one sequence of ids (T,) into a caption (see `decode_captions`)."""
        ids = np.asarray(ids)
        if ids.ndim != 1:
            raise ValueError(
                "Vocabulary.decode takes one sequence of ids (T,); use decode_captions(ids, vocab) "
                f"for a batch. Received: ids of shape {ids.shape}"
            )
        return decode_captions(ids, self)

    def save(self, path):
        """Write the word list as JSON to `path`."""
        Path(path).write_text(
            json.dumps({"words": self.words}, ensure_ascii=False, indent=0), encoding="utf-8"
        )

    @classmethod
    def load(cls, path):
        """Read a vocabulary written by `save`.

        Raises:
            ValueError: the file is not UTF-8, not JSON, or has no "words" list
                (the message names the file).
        """
        path = Path(path)
        try:
            data = json.loads(path.read_bytes().decode("utf-8"))
        except UnicodeDecodeError as error:
            raise ValueError(f"{path}: not a UTF-8 text file ({error}).") from None
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error}).") from None
        words = data.get("words") if isinstance(data, dict) else None
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise ValueError(
                f'{path}: expected a JSON object {{"words": [str, ...]}} written by Vocabulary.save.'
            )
        try:
            return cls(words)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None


@graded("data.decode_captions", lesson="01_data", points=2)
def decode_captions(ids, vocab):
    """Turn ids back into caption strings.

    For each row of ids, read left to right:
      - skip <NULL> (id 0) and <START> (id 1);
      - stop at the first <END> (id 2), which is not part of the caption;
      - every other id i becomes the word vocab.words[i] (<UNK> stays "<UNK>").
    Join the words with single spaces. A row with no words gives "".

    Args:
        ids: integer ids of shape (N, T) or (T,): a NumPy array (any int
            dtype), a list, or a tf.Tensor.
        vocab: a `Vocabulary` (vocab.words[i] is the word with id i).

    Returns:
        A list of N strings for (N, T) ids; one string for (T,) ids.

    Example:
        with words <NULL> <START> <END> <UNK> a red circle:
        [[1, 4, 5, 6, 2, 0]] -> ["a red circle"];  [1, 4, 2, 6] -> "a".

    Hints:
        np.asarray(ids) accepts all of the input types. Compare ids with the
        constants NULL, START and END of this module.
    """
    raise NotImplementedError(
        "TODO data.decode_captions: implement decode_captions in kcaption/data/vocab.py (lesson 01_data)"
    )
