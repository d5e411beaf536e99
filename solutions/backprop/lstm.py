from keras import ops


def lstm_step_backward(dnext_h, dnext_c, x, prev_h, prev_c, Wx, Wh, b):
    z = ops.matmul(x, Wx) + ops.matmul(prev_h, Wh) + b  # (N, 4H)
    z_i, z_f, z_g, z_o = ops.split(z, 4, axis=-1)
    i, f, g, o = ops.sigmoid(z_i), ops.sigmoid(z_f), ops.tanh(z_g), ops.sigmoid(z_o)
    tanh_c = ops.tanh(f * prev_c + i * g)  # (N, H)
    do = dnext_h * tanh_c
    dc = dnext_c + dnext_h * o * (1 - tanh_c * tanh_c)
    di, df, dg, dprev_c = dc * g, dc * prev_c, dc * i, dc * f
    dz = ops.concatenate(
        [di * i * (1 - i), df * f * (1 - f), dg * (1 - g * g), do * o * (1 - o)], axis=-1
    )  # (N, 4H), blocks i, f, g, o
    dx = ops.matmul(dz, ops.transpose(Wx))
    dprev_h = ops.matmul(dz, ops.transpose(Wh))
    dWx = ops.matmul(ops.transpose(x), dz)
    dWh = ops.matmul(ops.transpose(prev_h), dz)
    return dx, dprev_h, dprev_c, dWx, dWh, ops.sum(dz, axis=0)
