from keras import ops


class LSTMCell:
    def call(self, inputs, states, training=None):
        h_prev, c_prev = states[0], states[1]  # (N, H) each
        z = ops.matmul(inputs, self.Wx) + ops.matmul(h_prev, self.Wh) + self.b  # (N, 4H)
        z_i, z_f, z_g, z_o = ops.split(z, 4, axis=-1)  # 4 x (N, H)
        i = ops.sigmoid(z_i)
        f = ops.sigmoid(z_f)
        g = ops.tanh(z_g)
        o = ops.sigmoid(z_o)
        c = f * c_prev + i * g  # (N, H)
        h = o * ops.tanh(c)  # (N, H)
        return h, [h, c]
