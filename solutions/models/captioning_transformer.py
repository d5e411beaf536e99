"""Reference body for kcaption/models/captioning_transformer.py."""

from keras import ops


class CaptioningTransformer:
    def call(self, inputs, training=None, return_attention=False):
        images_or_features, captions_in = inputs
        memory = self.feature_projection(self.encode(images_or_features, training=training))  # (N, L, E)
        x = self.embedding(captions_in)  # (N, T, E)
        x = self.positional_encoding(x, training=training)
        padding_mask = ops.not_equal(captions_in, 0)  # (N, T)
        for layer in self.decoder_layers:
            x, weights = layer(
                x, memory, padding_mask=padding_mask, return_attention_scores=True, training=training
            )  # (N, T, E), (N, heads, T, L)
        logits = self.output_projection(x)  # (N, T, V)
        if return_attention:
            return logits, ops.mean(weights, axis=1)  # (N, T, L)
        return logits
