"""Reference body of the graded step in kcaption/data/vocab.py."""

import numpy as np

from kcaption.data.vocab import END, NULL, START


def decode_captions(ids, vocab):
    ids = np.asarray(ids)
    rows = ids[None] if ids.ndim == 1 else ids  # (N, T)
    captions = []
    for row in rows:
        words = []
        for i in row.tolist():
            if i == END:
                break
            if i not in (NULL, START):
                words.append(vocab.words[i])
        captions.append(" ".join(words))
    return captions[0] if ids.ndim == 1 else captions
