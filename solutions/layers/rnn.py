from keras import ops


class RNNCell:
    def call(self, inputs, states, training=None):
        h_prev = states[0]  # (N, H)
        h = ops.tanh(ops.matmul(inputs, self.Wx) + ops.matmul(h_prev, self.Wh) + self.b)  # (N, H)
        return h, [h]
