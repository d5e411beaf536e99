from keras import ops

from kcaption.backprop.rnn import rnn_step_backward as step_backward


def rnn_step_backward(dnext_h, x, prev_h, next_h, Wx, Wh):
    dz = dnext_h * (1 - next_h * next_h)  # (N, H)
    dx = ops.matmul(dz, ops.transpose(Wx))  # (N, D)
    dprev_h = ops.matmul(dz, ops.transpose(Wh))  # (N, H)
    dWx = ops.matmul(ops.transpose(x), dz)  # (D, H)
    dWh = ops.matmul(ops.transpose(prev_h), dz)  # (H, H)
    db = ops.sum(dz, axis=0)  # (H,)
    return dx, dprev_h, dWx, dWh, db


def rnn_backward(dh, x, h0, h, Wx, Wh):
    dprev = ops.zeros_like(h0)  # (N, H)
    dWx, dWh, db = ops.zeros_like(Wx), ops.zeros_like(Wh), ops.zeros_like(Wh[0])
    dxs = []
    for t in reversed(range(x.shape[1])):
        prev_h = h0 if t == 0 else h[:, t - 1]
        dx_t, dprev, dWx_t, dWh_t, db_t = step_backward(dh[:, t] + dprev, x[:, t], prev_h, h[:, t], Wx, Wh)
        dWx, dWh, db = dWx + dWx_t, dWh + dWh_t, db + db_t
        dxs.append(dx_t)
    return ops.stack(dxs[::-1], axis=1), dprev, dWx, dWh, db
