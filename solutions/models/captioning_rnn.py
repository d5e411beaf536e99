from keras import ops


class CaptioningRNN:
    def call(self, inputs, training=None):
        images_or_features, captions_in = inputs
        features = self.encode(images_or_features, training=training)  # (N, C)
        h0 = self.feature_projection(features)  # (N, H)
        state = self.initial_state(h0)
        x = self.embedding(captions_in)  # (N, T, D)
        mask = ops.not_equal(captions_in, 0)  # (N, T)
        h = self.rnn(x, initial_state=state, mask=mask, training=training)  # (N, T, H)
        return self.output_projection(h)  # (N, T, V)
