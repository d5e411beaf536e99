"""Reference bodies for kcaption/layers/attention.py."""

from keras import ops

from kcaption.layers.attention import dot_product_attention as _attend


def dot_product_attention(h_prev, A):
    H = ops.cast(ops.shape(A)[-1], A.dtype)
    scores = ops.einsum("nlh,nh->nl", A, h_prev) / ops.sqrt(H)  # (N, L)
    weights = ops.softmax(scores, axis=-1)  # (N, L)
    context = ops.einsum("nl,nlh->nh", weights, A)  # (N, H)
    return context, weights


class AttentionLSTMCell:
    def call(self, inputs, states, training=None):
        h_prev, c_prev, A = states
        context, _ = _attend(h_prev, A)  # (N, H)
        z = (
            ops.matmul(inputs, self.Wx)
            + ops.matmul(h_prev, self.Wh)
            + ops.matmul(context, self.Wattn)
            + self.b
        )  # (N, 4H)
        z_i, z_f, z_g, z_o = ops.split(z, 4, axis=-1)  # 4 x (N, H)
        i, f, g, o = ops.sigmoid(z_i), ops.sigmoid(z_f), ops.tanh(z_g), ops.sigmoid(z_o)
        c = f * c_prev + i * g
        h = o * ops.tanh(c)
        return h, [h, c, A]
