import math
from collections import Counter

import numpy as np


def cider_d(references, candidates, document_frequency=None):
    def ngram_counts(words):
        return Counter(tuple(words[i : i + n]) for n in range(1, 5) for i in range(len(words) - n + 1))

    if document_frequency is None:
        df = Counter()
        for group in references:
            df.update({gram for words in group for gram in ngram_counts(words)})  # once per image
        num_images = len(references)
    else:
        df, num_images = document_frequency.counts, document_frequency.num_images
    log_n = math.log(num_images)

    def tf_idf(words):
        """One {n-gram: tf * idf} per n = 1..4, and their norms."""
        vectors = [{} for _ in range(4)]
        for gram, tf in ngram_counts(words).items():
            vectors[len(gram) - 1][gram] = tf * (log_n - math.log(max(1, df.get(gram, 0))))
        return vectors, [math.sqrt(sum(w * w for w in v.values())) for v in vectors]

    scores = []
    for group, candidate in zip(references, candidates):
        vec_c, norm_c = tf_idf(candidate)
        total = 0.0  # summed over the references and n
        for reference in group:
            vec_s, norm_s = tf_idf(reference)
            penalty = math.exp(-((len(candidate) - len(reference)) ** 2) / (2 * 6.0**2))
            for n in range(4):
                if norm_c[n] > 0 and norm_s[n] > 0:
                    dot = sum(min(w, vec_s[n].get(g, 0.0)) * vec_s[n].get(g, 0.0) for g, w in vec_c[n].items())
                    total += dot / (norm_c[n] * norm_s[n]) * penalty
        scores.append(10.0 * total / 4 / len(group))
    per_image = np.array(scores, dtype=np.float64)
    return float(per_image.mean()), per_image
