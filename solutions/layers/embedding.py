from keras import ops


class WordEmbedding:
    def call(self, inputs):
        ids = ops.cast(inputs, "int32")
        return ops.take(self.W_embed, ids, axis=0)  # (N, T, D)
