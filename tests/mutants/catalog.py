"""The mutant catalog: realistic student bugs, and valid variants (instructor-only).

Each entry edits one reference solution: `old` (found exactly once in the
step's solutions file, indentation included) becomes `new`. `kcaption mutants`
runs the step's public + hidden tests on each edit:

- every MUTANT must be caught (some test of its step fails): a surviving
  mutant is a missing test;
- every VARIANT (another correct way to write the step) must pass.

Each graded step needs at least two mutants and one variant. When a solution
changes and an entry's `old` no longer matches, the run reports an error:
update the entry, never delete it to make the run pass.
"""

from kcaption.grading.mutants import Edit

MUTANTS = [
    # attention.dot_product
    Edit(
        "attention.dot_product",
        old="/ ops.sqrt(H)  # (N, L)",
        new="# (N, L)",
        why="missing 1/sqrt(H) scale on the scores",
    ),
    Edit(
        "attention.dot_product",
        old="weights = ops.softmax(scores, axis=-1)",
        new="weights = ops.softmax(scores, axis=0)",
        why="softmax over the batch axis instead of the L positions",
    ),
    Edit(
        "attention.dot_product",
        old='context = ops.einsum("nl,nlh->nh", weights, A)',
        new='context = ops.mean(A, axis=1)',
        why="context is the plain mean of the features, ignoring the weights",
    ),
    # attention.lstm_cell
    Edit(
        "attention.lstm_cell",
        old="            + ops.matmul(context, self.Wattn)\n",
        new="",
        why="forgot the attention context term",
    ),
    Edit(
        "attention.lstm_cell",
        old="z_i, z_f, z_g, z_o = ops.split(z, 4, axis=-1)",
        new="z_i, z_f, z_o, z_g = ops.split(z, 4, axis=-1)",
        why="old course-notes gate order i, f, o, g instead of Keras's i, f, g, o",
    ),
    Edit(
        "attention.lstm_cell",
        old="context, weights = _attend(h_prev, features)",
        new="context, weights = _attend(c_prev, features)",
        why="attends with the cell state instead of the hidden state",
    ),
    Edit(
        "attention.lstm_cell",
        old="h = o * ops.tanh(c)",
        new="h = o * c",
        why="forgot the tanh on the new cell state",
    ),
]

VARIANTS = [
    Edit(
        "attention.dot_product",
        old='scores = ops.einsum("nlh,nh->nl", A, h_prev) / ops.sqrt(H)  # (N, L)',
        new="scores = ops.squeeze(ops.matmul(A, ops.expand_dims(h_prev, -1)), -1) / ops.sqrt(H)",
        why="scores with matmul + expand_dims instead of einsum",
    ),
    Edit(
        "attention.lstm_cell",
        old="i, f, g, o = ops.sigmoid(z_i), ops.sigmoid(z_f), ops.tanh(z_g), ops.sigmoid(z_o)",
        new="import tensorflow as tf\n"
        "        i, f, g, o = tf.sigmoid(z_i), tf.sigmoid(z_f), tf.tanh(z_g), tf.sigmoid(z_o)",
        why="tf.* ops instead of keras.ops",
    ),
]
