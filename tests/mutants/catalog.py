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
    # data.decode_captions
    Edit(
        "data.decode_captions",
        old="            if i == END:\n                break\n",
        new="            if i == END:\n                continue\n",
        why="does not stop at <END>: words after it are kept",
        hint="stop at the first <END>",
    ),
    Edit(
        "data.decode_captions",
        old="            if i not in (NULL, START):\n",
        new="            if i != NULL:\n",
        why="keeps the <START> token in the caption",
        hint="'<START>' is in a caption",
    ),
    Edit(
        "data.decode_captions",
        old="    return captions[0] if ids.ndim == 1 else captions",
        new="    return captions",
        why="a single caption (1-D ids) comes back as a list",
        hint="(T,) ids gave a list",
    ),
    # embedding.forward
    Edit(
        "embedding.forward",
        old='ids = ops.cast(inputs, "int32")',
        new='ids = ops.cast(inputs, "int32") - 1',
        why="ids treated as 1-based (off by one)",
        hint="off by one",
    ),
    Edit(
        "embedding.forward",
        old="return ops.take(self.W_embed, ids, axis=0)",
        new="return ops.take(self.W_embed, ids, axis=0) * ops.sqrt(ops.cast(ops.shape(self.W_embed)[1], 'float32'))",
        why="scales by sqrt(D) as in the Transformer paper (not this layer's job)",
        hint="sqrt(D)",
    ),
    Edit(
        "embedding.forward",
        old="return ops.take(self.W_embed, ids, axis=0)",
        new="return ops.take(ops.transpose(self.W_embed), ids % ops.shape(self.W_embed)[1], axis=0)",
        why="looks up columns of a transposed matrix",
        hint="transposed",
    ),
    Edit(
        "embedding.forward",
        old="        return ops.take(self.W_embed, ids, axis=0)",
        new='        return ops.cast(ops.take(ops.cast(self.W_embed, "float32"), ids, axis=0), self.compute_dtype)',
        why="gathers from a float32 copy of W_embed and casts back: float64 rows lose their last digits",
        hint="round trip through float32",
    ),
    # loss.temporal_softmax
    Edit(
        "loss.temporal_softmax",
        old='keras.backend.result_type(logits.dtype, "float32")',
        new='"float32"',
        why="always computes in float32: float64 logits give a float32 loss with float32 precision",
    ),
    Edit(
        "loss.temporal_softmax",
        old='keras.backend.result_type(logits.dtype, "float32")',
        new='"float64"',
        why="computes everything in float64 to be safe: float32 logits give a float64 loss",
    ),
    Edit(
        "loss.temporal_softmax",
        old="    log_probs = ops.log_softmax(logits, axis=-1)",
        new='    log_probs = ops.cast(ops.log_softmax(ops.cast(logits, "float32"), axis=-1), dtype)',
        why="takes the log-softmax in float32 and casts back: the right dtype, float32 precision",
        hint="float32 precision",
    ),
    Edit(
        "loss.temporal_softmax",
        old='keras.backend.result_type(logits.dtype, "float32")',
        new="keras.backend.standardize_dtype(logits.dtype)",
        why="computes in the logits' own dtype, float16 included: a float16 loss under mixed precision",
    ),
    Edit(
        "loss.temporal_softmax",
        old="return -ops.sum(picked * mask) / batch_size",
        new="return -ops.sum(picked) / batch_size",
        why="<NULL> targets not masked",
        hint="(<NULL>) are counted",
    ),
    Edit(
        "loss.temporal_softmax",
        old="return -ops.sum(picked * mask) / batch_size",
        new="return -ops.mean(picked * mask)",
        why="mean over time (and batch) instead of sum over time, mean over the batch",
        hint="averaged over all N*T",
    ),
    Edit(
        "loss.temporal_softmax",
        old="return -ops.sum(picked * mask) / batch_size",
        new="return -ops.sum(picked * mask) / ops.sum(mask)",
        why="divides by the number of real tokens instead of the batch size",
        hint="number of counted tokens",
    ),
    Edit(
        "loss.temporal_softmax",
        old="log_probs = ops.log_softmax(logits, axis=-1)",
        new="log_probs = ops.log_softmax(logits, axis=1)",
        why="softmax over the time axis instead of the vocabulary",
        hint="softmax over the time axis",
    ),
    # rnn.cell
    Edit(
        "rnn.cell",
        old="ops.matmul(h_prev, self.Wh) + self.b)",
        new="ops.matmul(h_prev, self.Wh))",
        why="forgot the bias",
        hint="no bias",
    ),
    Edit(
        "rnn.cell",
        old="h = ops.tanh(",
        new="h = ops.sigmoid(",
        why="sigmoid instead of tanh",
        hint="sigmoid where the RNN takes tanh",
    ),
    Edit(
        "rnn.cell",
        old="return h, [h]",
        new="return h, [h_prev]",
        why="returns the old state: the recurrence never moves",
        hint="the next state is h_prev",
    ),
    # lstm.cell
    Edit(
        "lstm.cell",
        old="z_i, z_f, z_g, z_o = ops.split(z, 4, axis=-1)",
        new="z_i, z_f, z_o, z_g = ops.split(z, 4, axis=-1)",
        why="old course-notes gate order i, f, o, g instead of Keras's i, f, g, o",
        hint="order i, f, o, g",
    ),
    Edit(
        "lstm.cell",
        old="g = ops.tanh(z_g)",
        new="g = ops.sigmoid(z_g)",
        why="gate activation swapped: sigmoid on the candidate g",
        hint="sigmoid on the candidate g",
    ),
    Edit(
        "lstm.cell",
        old="c = f * c_prev + i * g",
        new="c = i * g",
        why="`c = i*g` instead of `c = f*c_prev + i*g` (= instead of +=)",
        hint="c_prev is forgotten",
    ),
    Edit(
        "lstm.cell",
        old=" + self.b  # (N, 4H)",
        new="  # (N, 4H)",
        why="forgot the bias",
        hint="no bias",
    ),
    # captioner.forward
    Edit(
        "captioner.forward",
        old="state = self.initial_state(h0)",
        new="state = self.initial_state(ops.zeros_like(h0))",
        why="h0 initialised to zeros: the image is ignored",
    ),
    Edit(
        "captioner.forward",
        old="h = self.rnn(x, initial_state=state, mask=mask, training=training)",
        new="h = self.rnn(x, initial_state=state, training=training)",
        why="<NULL> padding not masked",
    ),
    Edit(
        "captioner.forward",
        old="return self.output_projection(h)",
        new="return ops.softmax(self.output_projection(h))",
        why="returns probabilities instead of logits",
    ),
    Edit(
        "captioner.forward",
        old="        state = self.initial_state(h0)",
        new='        state = [h0, ops.zeros_like(h0)] if self.cell_type == "lstm" else self.initial_state(h0)',
        why="builds the LSTM state by hand, so the cell starts at zero whatever initial_cell says",
    ),
    Edit(
        "captioner.forward",
        old="        state = self.initial_state(h0)",
        new=(
            "        state = self.initial_state(h0)\n"
            '        if self.cell_type == "attn":\n'
            "            state = [state[0], ops.zeros_like(state[1]), state[2]]"
        ),
        why="the attention LSTM's cell starts at zero (as CS231n's LSTM) instead of the mean of A",
    ),
    # captioner.sample
    Edit(
        "captioner.sample",
        old="        tokens = ops.where(done, pad_token, tokens)\n",
        new="",
        why="sampling does not stop at <END>",
    ),
    Edit(
        "captioner.sample",
        old="        tokens = ops.where(done, pad_token, tokens)\n        outputs.append(tokens)\n"
        "        done = ops.logical_or(done, ops.equal(tokens, end_token))\n",
        new="        done = ops.logical_or(done, ops.equal(tokens, end_token))\n"
        "        tokens = ops.where(done, pad_token, tokens)\n        outputs.append(tokens)\n",
        why="<END> itself replaced by <NULL>",
    ),
    Edit(
        "captioner.sample",
        old="logits, state = next_logits(tokens, state)",
        new='logits, state = next_logits(ops.cast(start_tokens, "int32"), state)',
        why="always feeds <START> instead of the previous word",
    ),
    Edit(
        "captioner.sample",
        old=(
            "    outputs = []\n"
            "    for _ in range(max_length):\n"
            "        logits, state = next_logits(tokens, state)  # (N, V)\n"
            '        tokens = ops.cast(ops.argmax(logits, axis=-1), "int32")  # (N,)\n'
            "        tokens = ops.where(done, pad_token, tokens)\n"
            "        outputs.append(tokens)\n"
            "        done = ops.logical_or(done, ops.equal(tokens, end_token))\n"
            "    return ops.stack(outputs, axis=1)  # (N, max_length)"
        ),
        new=(
            '    outputs = ops.zeros((max_length, ops.shape(tokens)[0]), "int32")\n\n'
            "    def body(t, carry):\n"
            "        tokens, done, state, outputs = carry\n"
            "        logits, state = next_logits(tokens, state)  # (N, V)\n"
            '        tokens = ops.cast(ops.argmax(logits, axis=-1), "int32")  # (N,)\n'
            "        tokens = ops.where(done, pad_token, tokens)\n"
            "        outputs = ops.scatter_update(outputs, ops.reshape(t, (1, 1)), tokens[None])\n"
            "        return tokens, ops.logical_or(done, ops.equal(tokens, end_token)), state, outputs\n\n"
            "    outputs = ops.fori_loop(0, max_length, body, (tokens, done, state, outputs))[3]\n"
            "    return ops.transpose(outputs)  # (N, max_length)"
        ),
        why="a symbolic ops.fori_loop: the Transformer's growing prefix cannot ride a while loop when compiled",
    ),
    Edit(
        "captioner.sample",
        old='    done = ops.zeros_like(tokens, dtype="bool")',
        new='    done = ops.zeros((start_tokens.shape[0],), dtype="bool")',
        why="reads the batch size with .shape[0]: compiled sampling breaks for a second batch size",
    ),
    # transformer.positional_encoding
    Edit(
        "transformer.positional_encoding",
        old="ops.where(j % 2 == 0, ops.sin(angle), ops.cos(angle))",
        new="ops.where(j % 2 == 0, ops.cos(angle), ops.sin(angle))",
        why="sine and cosine swapped",
        hint="sine and cosine swapped",
    ),
    Edit(
        "transformer.positional_encoding",
        old="exponent = ops.cast(2 * (j // 2), inputs.dtype) / D",
        new="exponent = ops.cast(j, inputs.dtype) / D",
        why="frequency exponent j/D instead of 2*(j//2)/D",
        hint="exponent j/D",
    ),
    Edit(
        "transformer.positional_encoding",
        old="t = ops.cast(ops.arange(T), inputs.dtype)",
        new="t = ops.cast(ops.arange(1, T + 1), inputs.dtype)",
        why="positions counted from 1",
        hint="positions counted from 1",
    ),
    Edit(
        "transformer.multi_head_attention",
        old='heads = ops.einsum("nhts,nshd->nthd", self.dropout_layer(weights, training=training), V)',
        new='heads = self.dropout_layer(ops.einsum("nhts,nshd->nthd", weights, V), training=training)',
        why="dropout applied to the heads' outputs instead of the attention weights",
    ),
    Edit(
        "transformer.multi_head_attention",
        old="noise_shape=(N, 1, h, 1)",
        new="noise_shape=(1, 1, h, 1)",
        why="DropHead drops the same heads for every example of the batch",
    ),
    Edit(
        "transformer.multi_head_attention",
        old="ops.sqrt(ops.cast(d, Q.dtype))",
        new='ops.sqrt(ops.cast(d, "float32"))',
        why="casts the head width to float32 (float64 inputs lose precision)",
    ),
    # transformer.multi_head_attention
    Edit(
        "transformer.multi_head_attention",
        old=" / ops.sqrt(ops.cast(d, Q.dtype))",
        new="",
        why="missing 1/sqrt(d_head)",
        hint="not scaled",
    ),
    Edit(
        "transformer.multi_head_attention",
        old="ops.sqrt(ops.cast(d, Q.dtype))",
        new="ops.sqrt(ops.cast(h * d, Q.dtype))",
        why="scaled by the model width instead of the head width",
        hint="sqrt(E)",
    ),
    Edit(
        "transformer.multi_head_attention",
        old="weights = ops.softmax(scores, axis=-1)",
        new="weights = ops.softmax(scores, axis=-2)",
        why="softmax over the query axis instead of the keys",
        hint="softmax over the queries",
    ),
    Edit(
        "transformer.multi_head_attention",
        old="scores = ops.where(mask, scores, ops.cast(-1e9, scores.dtype))",
        new="scores = scores",
        why="attention mask applied after the softmax only (weights not renormalised)",
        hint="masked only after the softmax",
    ),
    # transformer.captioner
    Edit(
        "transformer.captioner",
        old="        x = self.positional_encoding(x, training=training)\n",
        new="",
        why="forgot the positional encoding",
    ),
    Edit(
        "transformer.captioner",
        old="padding_mask=padding_mask,",
        new="padding_mask=None,",
        why="<NULL> padding not masked",
    ),
    Edit(
        "transformer.captioner",
        old="ops.mean(weights, axis=1)",
        new="ops.mean(weights, axis=-1)",
        why="attention averaged over the memory instead of the heads",
    ),
    Edit(
        "transformer.positional_encoding",
        old="        return self.dropout_layer(inputs + pe, training=training)",
        new=(
            "        import keras\n\n        if not training:\n            return inputs + pe\n"
            "        keep = keras.random.uniform(ops.shape(inputs)) >= self.dropout\n"
            "        return ops.where(keep, inputs + pe, ops.zeros_like(inputs))"
        ),
        why="hand-made dropout mask that does not rescale the kept values by 1/(1-rate)",
    ),
    # transformer.causal_mask
    Edit(
        "transformer.causal_mask",
        old="return ops.expand_dims(i, 1) >= ops.expand_dims(i, 0)",
        new="return ops.expand_dims(i, 1) > ops.expand_dims(i, 0)",
        why="> instead of >=: a word may not attend to itself (diagonal masked)",
        hint="the diagonal is False",
    ),
    Edit(
        "transformer.causal_mask",
        old="return ops.expand_dims(i, 1) >= ops.expand_dims(i, 0)",
        new="return ops.expand_dims(i, 1) <= ops.expand_dims(i, 0)",
        why="transposed mask: each word sees the words after it, not before",
        hint="transposed",
    ),
    Edit(
        "transformer.causal_mask",
        old="return ops.expand_dims(i, 1) >= ops.expand_dims(i, 0)",
        new="return ops.expand_dims(i, 1) + 1 >= ops.expand_dims(i, 0)",
        why="off by one: each word also sees the next word",
        hint="off by one",
    ),
    Edit(
        "transformer.causal_mask",
        old="return ops.expand_dims(i, 1) >= ops.expand_dims(i, 0)",
        new="return ops.tril(ops.ones((length, length)))",
        why="a 0/1 float mask instead of a boolean one",
    ),
    Edit(
        "transformer.causal_mask",
        old="    i = ops.arange(length)\n    return ops.expand_dims(i, 1) >= ops.expand_dims(i, 0)",
        new="    import numpy as np\n\n    return np.tril(np.ones((length, length), bool))",
        why="NumPy instead of keras.ops: fails when T is a tensor (inside a compiled graph)",
    ),
    # transformer.decoder_layer
    Edit(
        "transformer.decoder_layer",
        old="        attended = self.self_attention(x, x, attention_mask=mask, training=training)\n"
        "        x = self.self_norm(x + self.dropout_layer(attended, training=training))\n",
        new="        normed = self.self_norm(x)\n"
        "        attended = self.self_attention(normed, normed, attention_mask=mask, training=training)\n"
        "        x = x + self.dropout_layer(attended, training=training)\n",
        why="pre-norm self-attention block (norm the input, no norm after the sum) instead of post-norm",
    ),
    Edit(
        "transformer.decoder_layer",
        old="x = self.cross_norm(x + self.dropout_layer(attended, training=training))",
        new="x = self.cross_norm(self.dropout_layer(attended, training=training))",
        why="forgot the residual of the cross-attention block",
    ),
    Edit(
        "transformer.decoder_layer",
        old="            x, memory, return_attention_scores=True, training=training\n",
        new="            x, x, return_attention_scores=True, training=training\n",
        why="cross-attention over x instead of the image memory",
    ),
    Edit(
        "transformer.decoder_layer",
        old='            mask = ops.logical_and(mask, ops.cast(padding_mask, "bool")[:, None, :])  # (N, T, T)\n',
        new="            pass\n",
        why="padding mask ignored",
    ),
    Edit(
        "transformer.decoder_layer",
        old='ops.cast(padding_mask, "bool")[:, None, :]',
        new='ops.cast(padding_mask, "bool")[:, :, None]',
        why="padding mask on the queries (rows) instead of the keys (columns)",
    ),
    Edit(
        "transformer.decoder_layer",
        old="mask = _causal_mask(T)[None]  # (1, T, T)",
        new='mask = ops.ones((1, T, T), "bool")',
        why="no causal mask: every word sees the whole caption",
    ),
    Edit(
        "transformer.decoder_layer",
        old="x = self.feedforward_norm(x + self.dropout_layer(hidden, training=training))",
        new="x = self.feedforward_norm(x + self.dropout_layer(hidden, training=True))",
        why="dropout applied at inference too (training=True)",
    ),
    Edit(
        "transformer.decoder_layer",
        old="x = self.feedforward_norm(x + self.dropout_layer(hidden, training=training))",
        new="x = self.feedforward_norm(x + hidden)",
        why="forgot the dropout of the feed-forward block",
    ),
    Edit(
        "transformer.decoder_layer",
        old="x = self.self_norm(x + self.dropout_layer(attended, training=training))",
        new="x = self.dropout_layer(self.self_norm(x + attended), training=training)",
        why="dropout after the norm instead of on the self-attention output",
    ),
    Edit(
        "transformer.decoder_layer",
        old="            return x, cross_weights\n",
        new="            return x, self.self_attention(inputs, inputs, attention_mask=mask, "
        "return_attention_scores=True)[1]\n",
        why="returns the self-attention weights instead of the cross-attention's",
    ),
    # attention.dot_product
    Edit(
        "attention.dot_product",
        old="/ ops.sqrt(H)  # (N, L)",
        new="# (N, L)",
        why="missing 1/sqrt(H) scale on the scores",
        hint="not scaled",
    ),
    Edit(
        "attention.dot_product",
        old="weights = ops.softmax(scores, axis=-1)",
        new="weights = ops.softmax(scores, axis=0)",
        why="softmax over the batch axis instead of the L positions",
        hint="softmax over the batch axis",
    ),
    Edit(
        "attention.dot_product",
        old='context = ops.einsum("nl,nlh->nh", weights, A)',
        new='context = ops.mean(A, axis=1)',
        why="context is the plain mean of the features, ignoring the weights",
        hint="plain mean of A",
    ),
    Edit(
        "attention.dot_product",
        old="H = ops.cast(ops.shape(A)[-1], A.dtype)",
        new='H = ops.cast(ops.shape(A)[-1], "float32")',
        why="casts H to float32 (breaks float64 inputs)",
    ),
    # attention.lstm_cell
    Edit(
        "attention.lstm_cell",
        old="            + ops.matmul(context, self.Wattn)\n",
        new="",
        why="forgot the attention context term",
        hint="context term is missing",
    ),
    Edit(
        "attention.lstm_cell",
        old="z_i, z_f, z_g, z_o = ops.split(z, 4, axis=-1)",
        new="z_i, z_f, z_o, z_g = ops.split(z, 4, axis=-1)",
        why="old course-notes gate order i, f, o, g instead of Keras's i, f, g, o",
        hint="order i, f, o, g",
    ),
    Edit(
        "attention.lstm_cell",
        old="context, _ = _attend(h_prev, A)",
        new="context, _ = _attend(c_prev, A)",
        why="attends with the cell state instead of the hidden state",
        hint="attended with c_prev",
    ),
    Edit(
        "attention.lstm_cell",
        old="h = o * ops.tanh(c)",
        new="h = o * c",
        why="forgot the tanh on the new cell state",
        hint="tanh of c missing",
    ),
    Edit(
        "attention.lstm_cell",
        old="z_i, z_f, z_g, z_o = ops.split(z, 4, axis=-1)",
        new='z_i, z_f, z_g, z_o = ops.split(ops.cast(z, "float32"), 4, axis=-1)',
        why="casts the gate pre-activations to float32 (float64 in, float32 out)",
    ),
    # lesson 07: metrics.cider_d (mutants)
    Edit(
        "metrics.cider_d",
        old="min(w, vec_s[n].get(g, 0.0)) * vec_s[n].get(g, 0.0)",
        new="w * vec_s[n].get(g, 0.0)",
        why="no clipping: a word the candidate repeats matches more than the reference has",
        hint="counts are not clipped",
    ),
    Edit(
        "metrics.cider_d",
        old="total += dot / (norm_c[n] * norm_s[n]) * penalty",
        new="total += dot / (norm_c[n] * norm_s[n])",
        why="no Gaussian length penalty (CIDEr, not CIDEr-D)",
        hint="no length penalty",
    ),
    Edit(
        "metrics.cider_d",
        old="(2 * 6.0**2)",
        new="(2 * 6.0)",
        why="the penalty divides by 2 sigma, not 2 sigma^2",
        hint="divides by 2 sigma, not 2 sigma**2",
    ),
    Edit(
        "metrics.cider_d",
        old="scores.append(10.0 * total / 4 / len(group))",
        new="scores.append(total / 4 / len(group))",
        why="forgot the x10",
        hint="10 times too small",
    ),
    Edit(
        "metrics.cider_d",
        old="scores.append(10.0 * total / 4 / len(group))",
        new="scores.append(10.0 * total / len(group))",
        why="sums over n = 1..4 instead of averaging",
        hint="summed over n = 1..4",
    ),
    Edit(
        "metrics.cider_d",
        old="scores.append(10.0 * total / 4 / len(group))",
        new="scores.append(10.0 * total / 4)",
        why="sums over the references instead of averaging",
        hint="summed over the references",
    ),
    Edit(
        "metrics.cider_d",
        old="        for group in references:\n"
        "            df.update({gram for words in group for gram in ngram_counts(words)})  # once per image\n",
        new="        for words in candidates:\n"
        "            df.update(set(ngram_counts(words)))\n",
        why="document frequencies counted over the candidates, not the references",
        hint="counted over the candidates",
    ),
    Edit(
        "metrics.cider_d",
        old="df.update({gram for words in group for gram in ngram_counts(words)})",
        new="df.update(gram for words in group for gram in ngram_counts(words))",
        why="df counts the references that contain the n-gram, not the images",
        hint="df counts each reference",
    ),
    Edit(
        "metrics.cider_d",
        old="math.log(max(1, df.get(gram, 0)))",
        new="math.log(df.get(gram, 0) + 1)",
        why="log(df + 1) instead of log(max(1, df))",
        hint="idf with log(df + 1)",
    ),
    Edit(
        "metrics.cider_d",
        old="tf * (log_n - math.log(max(1, df.get(gram, 0))))",
        new="tf * math.log((num_images + 1) / (df.get(gram, 0) + 1))",
        why="a smoothed idf log((N + 1) / (df + 1)), as in scikit-learn",
    ),
    Edit(
        "metrics.cider_d",
        old="log_n = math.log(num_images)",
        new="log_n = math.log(len(references))",
        why="N is the number of images scored, not the corpus's num_images",
    ),
    Edit(
        "metrics.cider_d",
        old="if document_frequency is None:",
        new="if True:",
        why="ignores the document_frequency given: always counts it from the references scored",
    ),
    Edit(
        "metrics.cider_d",
        old="math.exp(-((len(candidate) - len(reference)) ** 2)",
        new='math.exp(-((len(" ".join(candidate)) - len(" ".join(reference))) ** 2)',
        why="lengths in characters, not words",
    ),
    # lesson 07: decoding.beam_search (mutants)
    Edit(
        "decoding.beam_search",
        old="        state = keras.tree.map_structure(lambda s, rows=rows: ops.take(s, rows, axis=0), state)\n",
        new="",
        why="the state is not reordered by the chosen beams: a beam goes on from another beam's state",
    ),
    Edit(
        "decoding.beam_search",
        old="        log_probs = ops.where(done[:, None], only_pad[None, :], log_probs)\n",
        new="",
        why="finished beams are extended: words after <END> change their score",
    ),
    Edit(
        "decoding.beam_search",
        old='        lengths = lengths + ops.cast(ops.logical_not(done), "int32")',
        new="        lengths = lengths + 1",
        why="the length penalty uses max_length for every beam, not the words up to <END>",
    ),
    Edit(
        "decoding.beam_search",
        old='        lengths = lengths + ops.cast(ops.logical_not(done), "int32")',
        new='        lengths = lengths + ops.cast(ops.logical_not(ops.logical_or(done, ops.equal(tokens, end_token))), "int32")',
        why="the length |Y| of the penalty does not count <END>",
    ),
    Edit(
        "decoding.beam_search",
        old="        scores, index = ops.top_k(ops.reshape(candidates, (-1, k * vocab_size)), k)  # (n, k)",
        new=(
            "        grown = ops.reshape(lengths + ops.cast(ops.logical_not(done), \"int32\"), (-1, k, 1))\n"
            "        per_step = candidates / ((5.0 + ops.cast(grown, \"float32\")) / 6.0) ** length_penalty\n"
            "        _, index = ops.top_k(ops.reshape(per_step, (-1, k * vocab_size)), k)\n"
            "        scores = ops.take_along_axis(ops.reshape(candidates, (-1, k * vocab_size)), index, axis=1)"
        ),
        why="prunes by the length-penalised score at every step, not by log P (the penalty is for the final ranking)",
    ),
    Edit(
        "decoding.beam_search",
        old="    scores = ops.zeros((n, 1)) + ops.array([0.0] + [-np.inf] * (k - 1))",
        new="    scores = ops.zeros((n, k))",
        why="step 0 expands all k beams, which are copies: the beams are the same caption k times",
    ),
    Edit(
        "decoding.beam_search",
        old="        beam, word = index // vocab_size, index % vocab_size",
        new="        beam, word = index % vocab_size, index // vocab_size",
        why="beam and word swapped (% gives the word, // the beam)",
    ),
    Edit(
        "decoding.beam_search",
        old='        log_probs = ops.log_softmax(ops.cast(logits_now, "float32"), axis=-1)',
        new='        log_probs = ops.cast(logits_now, "float32")',
        why="sums raw logits instead of log-probabilities",
    ),
    Edit(
        "decoding.beam_search",
        old="    scores, order = ops.top_k(scores / penalty, k)  # (n, k), best first",
        new="    _, order = ops.top_k(scores, k)\n    scores = ops.take_along_axis(scores / penalty, order, axis=1)",
        why="ranks the final beams by log P, not by the length-penalised score",
    ),
    Edit(
        "decoding.beam_search",
        old="        rows = ops.reshape(beam + offsets, (-1,))",
        new="        rows = ops.reshape(beam, (-1,))",
        why="the parent rows forget the image offset n*k: every image continues image 0's beams",
    ),
    Edit(
        "decoding.beam_search",
        old='        log_probs = ops.log_softmax(ops.cast(logits_now, "float32"), axis=-1)',
        new="        log_probs = ops.log_softmax(logits_now, axis=-1)",
        why="log-softmax in the logits' dtype: float16 logits give float16 scores",
    ),
    # lesson 07: transformer.kv_cache (mutants)
    Edit(
        "transformer.kv_cache",
        old=" / ops.sqrt(ops.cast(d, Q.dtype))  # (N, h, 1, t+1)",
        new="  # (N, h, 1, t+1)",
        why="missing 1/sqrt(d) scale on the scores",
    ),
    Edit(
        "transformer.kv_cache",
        old="        return x, (keys, values)\n",
        new="        return x, cache\n",
        why="returns the old cache: the next step sees none of the positions so far",
    ),
    Edit(
        "transformer.kv_cache",
        old="        values = ops.concatenate([values, ops.matmul(inputs, Wv) + bv], axis=1)  # (N, t+1, E)\n",
        new="",
        why="appends the new key to the cache but not the new value",
    ),
    Edit(
        "transformer.kv_cache",
        old="values = ops.concatenate([values, ops.matmul(inputs, Wv) + bv], axis=1)",
        new="values = ops.concatenate([values, inputs], axis=1)",
        why="caches the values unprojected (the layer's input, not x Wv + bv)",
    ),
    Edit(
        "transformer.kv_cache",
        old="Q = ops.reshape(ops.matmul(inputs, Wq) + bq, (N, 1, h, d))",
        new="Q = ops.reshape(keys[:, -1:], (N, 1, h, d))",
        why="the query taken from the cache (the new position's key) instead of inputs Wq + bq",
    ),
    Edit(
        "transformer.kv_cache",
        old="        K = ops.reshape(keys, (N, -1, h, d))  # (N, t+1, h, d)\n"
        "        V = ops.reshape(values, (N, -1, h, d))\n"
        '        scores = ops.einsum("nqhd,nshd->nhqs", Q, K)',
        new="        K = ops.reshape(keys, (N, h, -1, d))\n"
        "        V = ops.reshape(values, (N, h, -1, d))\n"
        '        scores = ops.einsum("nqhd,nhsd->nhqs", Q, K)',
        why="splits the cached keys and values straight into (N, h, t+1, d) (wrong numbers per head)",
    ),
    Edit(
        "transformer.kv_cache",
        old='        heads = ops.einsum("nhqs,nshd->nqhd", ops.softmax(scores, axis=-1), V)  # (N, 1, h, d)',
        new='        heads = ops.einsum("nhqs,nshd->nqhd", ops.softmax(scores, axis=1), V)  # (N, 1, h, d)',
        why="softmax over the heads instead of the keys",
    ),
    Edit(
        "transformer.kv_cache",
        old="        x = self.self_norm(inputs + attended)\n",
        new="        x = inputs + self.self_norm(attended)\n",
        why="norm inside the residual (x + norm(attention)) instead of post-norm norm(x + attention)",
    ),
    Edit(
        "transformer.kv_cache",
        old="        x = self.cross_norm(x + self.cross_attention(x, memory))\n",
        new="",
        why="skips the cross-attention block: the caption never looks at the image",
    ),
    Edit(
        "transformer.kv_cache",
        old="(ops.cast(w, inputs.dtype) for w in attention.weights)",
        new="attention.weights",
        why="uses the float32 weights as they are: under mixed precision float16 + float32 fails",
    ),
    Edit(
        "transformer.kv_cache",
        old="        keys = ops.concatenate([keys, ops.matmul(inputs, Wk) + bk], axis=1)  # (N, t+1, E)\n"
        "        values = ops.concatenate([values, ops.matmul(inputs, Wv) + bv], axis=1)  # (N, t+1, E)\n",
        new="        keys = ops.concatenate([ops.matmul(inputs, Wk) + bk, keys], axis=1)\n"
        "        values = ops.concatenate([ops.matmul(inputs, Wv) + bv, values], axis=1)\n",
        why="prepends the new position to the cache (the cache out of order)",
    ),
    # lesson 08: backprop.rnn_step (mutants)
    Edit(
        "backprop.rnn_step",
        old="dz = dnext_h * (1 - next_h * next_h)",
        new="dz = dnext_h * (1 - next_h)",
        why="tanh'(z) written as 1 - tanh(z)",
        hint="tanh'(z) written as 1 - next_h",
    ),
    Edit(
        "backprop.rnn_step",
        old="dz = dnext_h * (1 - next_h * next_h)",
        new="dz = dnext_h * (1 - ops.tanh(next_h) ** 2)",
        why="tanh' applied to next_h, the tanh's output, as if it were z",
    ),
    Edit(
        "backprop.rnn_step",
        old="dz = dnext_h * (1 - next_h * next_h)",
        new="dz = dnext_h",
        why="forgets the tanh': backpropagates as if the step were linear",
    ),
    Edit(
        "backprop.rnn_step",
        old="dWh = ops.matmul(ops.transpose(prev_h), dz)",
        new="dWh = ops.matmul(ops.transpose(dz), prev_h)",
        why="dWh transposed: dz^T prev_h has Wh's (square) shape, so no shape error says so",
    ),
    Edit(
        "backprop.rnn_step",
        old="dWx = ops.matmul(ops.transpose(x), dz)",
        new="dWx = ops.matmul(ops.transpose(dz), x)",
        why="dWx transposed (only the shape differs when D != H; with D == H it runs)",
    ),
    Edit(
        "backprop.rnn_step",
        old="dx = ops.matmul(dz, ops.transpose(Wx))",
        new="dx = ops.matmul(dz, Wx)",
        why="dx = dz Wx, no transpose",
    ),
    Edit(
        "backprop.rnn_step",
        old="db = ops.sum(dz, axis=0)",
        new="db = ops.mean(dz, axis=0)",
        why="db averaged over the batch instead of summed",
    ),
    # lesson 08: backprop.rnn (mutants)
    Edit(
        "backprop.rnn",
        old="dWx, dWh, db = dWx + dWx_t, dWh + dWh_t, db + db_t",
        new="dWx, dWh, db = dWx_t, dWh_t, db_t",
        why="weight gradients overwritten at every step (= instead of +=): only step 0's share is kept",
        hint="only step 0's share of the weight gradient is left",
    ),
    Edit(
        "backprop.rnn",
        old="step_backward(dh[:, t] + dprev, ",
        new="step_backward(dh[:, t], ",
        why="the dh from the next step (dprev) is not added: no gradient flows back through time",
        hint='the dprev_h that step t+1 hands back is not added',
    ),
    Edit(
        "backprop.rnn",
        old="prev_h = h0 if t == 0 else h[:, t - 1]",
        new="prev_h = h0 if t == 0 else h[:, t]",
        why="prev_h taken as h[:, t], the step's own output, instead of h[:, t-1]",
    ),
    Edit(
        "backprop.rnn",
        old="return ops.stack(dxs[::-1], axis=1)",
        new="return ops.stack(dxs, axis=1)",
        why="dx stacked in the order the loop made it: time reversed",
    ),
    Edit(
        "backprop.rnn",
        old="for t in reversed(range(x.shape[1])):",
        new="for t in range(x.shape[1]):",
        why="loops forward in time: each step gets the dprev of the step before it",
    ),
    Edit(
        "backprop.rnn",
        old="return ops.stack(dxs[::-1], axis=1), dprev, ",
        new="return ops.stack(dxs[::-1], axis=1), ops.zeros_like(h0), ",
        why="dh0 returned as 0 (h0 treated as a constant)",
    ),
    # lesson 08: backprop.embedding (mutants)
    Edit(
        "backprop.embedding",
        old="return ops.segment_sum(rows, flat_ids, num_segments=vocab_size)",
        new="return ops.scatter_update(ops.zeros((vocab_size, D), rows.dtype), flat_ids[:, None], rows)",
        why="scatters with an update (dW[ids] = dout): a repeated id keeps one of its gradients",
    ),
    Edit(
        "backprop.embedding",
        old="return ops.segment_sum(rows, flat_ids, num_segments=vocab_size)",
        new="return ops.segment_sum(rows, flat_ids)",
        why="no num_segments: dW stops at the largest id that occurs, not at vocab_size",
    ),
    Edit(
        "backprop.embedding",
        old="return ops.segment_sum(rows, flat_ids, num_segments=vocab_size)",
        new="return ops.segment_sum(rows, flat_ids, num_segments=vocab_size) / ops.maximum(\n"
        "        ops.segment_sum(ops.ones_like(rows[:, :1]), flat_ids, num_segments=vocab_size), 1)",
        why="averages a repeated word's gradients instead of summing them",
        hint="a repeated word got the mean of its occurrences' gradients",
    ),
    Edit(
        "backprop.embedding",
        old="rows = ops.reshape(dout, (-1, D))",
        new='rows = ops.cast(ops.reshape(dout, (-1, D)), "float32")',
        why="sums in float32: float64 dout gives a float32 dW",
    ),
    # lesson 08: backprop.loss (mutants)
    Edit(
        "backprop.loss",
        old="return (probs - onehot) * mask[..., None] / batch_size",
        new="return (probs - onehot) / batch_size",
        why="masked positions leak gradient: the mask is not applied",
        hint='is the mask applied?',
    ),
    Edit(
        "backprop.loss",
        old="return (probs - onehot) * mask[..., None] / batch_size",
        new="return (probs * mask[..., None] - onehot) / batch_size",
        why="masks the softmax but not the one-hot: an ignored position still sends -1/N to its target",
    ),
    Edit(
        "backprop.loss",
        old="mask = ops.cast(ops.not_equal(targets, ignore_index), dtype)",
        new="mask = ops.cast(ops.not_equal(targets, 0), dtype)",
        why="masks <NULL> (id 0) whatever ignore_index says",
    ),
    Edit(
        "backprop.loss",
        old="return (probs - onehot) * mask[..., None] / batch_size",
        new="return (probs - onehot) * mask[..., None] / ops.sum(mask)",
        why="divides by the number of real tokens instead of the batch size (NaN for a fully masked batch)",
    ),
    Edit(
        "backprop.loss",
        old="return (probs - onehot) * mask[..., None] / batch_size",
        new="return (probs - onehot) * mask[..., None] / (batch_size * ops.cast(ops.shape(targets)[1], dtype))",
        why="divides by N*T (a mean over every position) instead of N",
    ),
    Edit(
        "backprop.loss",
        old="return (probs - onehot) * mask[..., None] / batch_size",
        new="return (onehot - probs) * mask[..., None] / batch_size",
        why="sign flipped: the gradient of the log-likelihood, not of the loss",
    ),
    Edit(
        "backprop.loss",
        old='keras.backend.result_type(logits.dtype, "float32")',
        new='"float32"',
        why="always computes in float32: float64 logits give a float32 gradient",
    ),
    Edit(
        "backprop.loss",
        old='keras.backend.result_type(logits.dtype, "float32")',
        new="keras.backend.standardize_dtype(logits.dtype)",
        why="computes in the logits' own dtype, float16 included",
    ),
    Edit(
        "backprop.loss",
        old="probs = ops.softmax(logits, axis=-1)",
        new="probs = ops.exp(logits) / ops.sum(ops.exp(logits), axis=-1, keepdims=True)",
        why="softmax as exp / sum(exp) without subtracting the max: overflows for large logits",
    ),
    # lesson 08: backprop.lstm_step (mutants)
    Edit(
        "backprop.lstm_step",
        old="[di * i * (1 - i), df * f * (1 - f), dg * (1 - g * g), do * o * (1 - o)]",
        new="[di * i * (1 - i), df * f * (1 - f), do * o * (1 - o), dg * (1 - g * g)]",
        why="dz's gate blocks in the order i, f, o, g: g's and o's weight gradients swapped",
        hint="dz's blocks are in the order i, f, o, g",
    ),
    Edit(
        "backprop.lstm_step",
        old="z_i, z_f, z_g, z_o = ops.split(z, 4, axis=-1)",
        new="z_i, z_f, z_o, z_g = ops.split(z, 4, axis=-1)",
        why="recomputes the forward with the gates read in the order i, f, o, g",
    ),
    Edit(
        "backprop.lstm_step",
        old="dc = dnext_c + dnext_h * o * (1 - tanh_c * tanh_c)",
        new="dc = dnext_h * o * (1 - tanh_c * tanh_c)",
        why="dnext_c not added: the cell path through time is dropped",
        hint='dnext_c is not added',
    ),
    Edit(
        "backprop.lstm_step",
        old="dc = dnext_c + dnext_h * o * (1 - tanh_c * tanh_c)",
        new="dc = dnext_c + dnext_h * o * (1 - tanh_c)",
        why="tanh'(next_c) written as 1 - tanh(next_c)",
    ),
    Edit(
        "backprop.lstm_step",
        old="[di * i * (1 - i), ",
        new="[di * i, ",
        why="sigmoid' of the input gate written as i instead of i (1 - i)",
    ),
    Edit(
        "backprop.lstm_step",
        old="dg * (1 - g * g)",
        new="dg * g * (1 - g)",
        why="the sigmoid' used for g, which is a tanh",
    ),
    Edit(
        "backprop.lstm_step",
        old="dc * i, dc * f\n",
        new="dc * i, dc\n",
        why="dprev_c = dc: forgets the forget gate",
    ),
    Edit(
        "backprop.lstm_step",
        old="di, df, dg, dprev_c = dc * g, dc * prev_c, dc * i, dc * f",
        new="di, df, dg, dprev_c = dc * i, dc * prev_c, dc * g, dc * f",
        why="di = dc * i and dg = dc * g: each gate multiplied by itself instead of by its partner",
    ),
    Edit(
        "backprop.lstm_step",
        old="do = dnext_h * tanh_c",
        new="do = dnext_h * (f * prev_c + i * g)",
        why="do = dnext_h * next_c: the tanh of the cell state forgotten",
    ),
    Edit(
        "backprop.lstm_step",
        old="[di * i * (1 - i), ",
        new="[di * ops.exp(-z_i) / (1 + ops.exp(-z_i)) ** 2, ",
        why="sigmoid' written from z as exp(-z) / (1 + exp(-z))^2: inf / inf = NaN when the gate saturates",
    ),
    Edit(
        "backprop.lstm_step",
        old="ops.sum(dz, axis=0)",
        new="ops.mean(dz, axis=0)",
        why="db averaged over the batch instead of summed",
    ),
]

VARIANTS = [
    Edit(
        "captioner.sample",
        old='    done = ops.zeros_like(tokens, dtype="bool")',
        new='    done = ops.zeros((ops.shape(start_tokens)[0],), dtype="bool")',
        why="batch size read with ops.shape (dynamic)",
    ),
    Edit(
        "data.decode_captions",
        old="        words = []\n        for i in row.tolist():\n            if i == END:\n                break\n"
        "            if i not in (NULL, START):\n                words.append(vocab.words[i])\n",
        new="        import itertools\n\n"
        "        kept = itertools.takewhile(lambda i: i != END, row.tolist())\n"
        "        words = [vocab.words[i] for i in kept if i not in (NULL, START)]\n",
        why="itertools.takewhile and a comprehension",
    ),
    Edit(
        "embedding.forward",
        old="return ops.take(self.W_embed, ids, axis=0)",
        new="import tensorflow as tf\n\n        return tf.gather(self.W_embed, ids)",
        why="tf.gather instead of keras.ops.take",
    ),
    Edit(
        "embedding.forward",
        old="return ops.take(self.W_embed, ids, axis=0)",
        new="return ops.matmul(ops.one_hot(ids, ops.shape(self.W_embed)[0], dtype=self.compute_dtype), self.W_embed)",
        why="one-hot times the matrix",
    ),
    Edit(
        "loss.temporal_softmax",
        old="picked = ops.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]",
        new="import tensorflow as tf\n\n"
        "    picked = -tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)",
        why="tf.nn.sparse_softmax_cross_entropy_with_logits",
    ),
    Edit(
        "rnn.cell",
        old="h = ops.tanh(ops.matmul(inputs, self.Wx) + ops.matmul(h_prev, self.Wh) + self.b)",
        new="import tensorflow as tf\n\n        h = tf.tanh(tf.matmul(inputs, self.Wx) + tf.matmul(h_prev, self.Wh) + self.b)",
        why="tf.* ops instead of keras.ops",
    ),
    Edit(
        "lstm.cell",
        old="z = ops.matmul(inputs, self.Wx) + ops.matmul(h_prev, self.Wh) + self.b",
        new="z = ops.matmul(ops.concatenate([inputs, h_prev], -1), ops.concatenate([self.Wx, self.Wh], 0)) + self.b",
        why="one matmul on [x, h_prev] and the stacked weights",
    ),
    Edit(
        "captioner.forward",
        old="mask = ops.not_equal(captions_in, 0)",
        new="import tensorflow as tf\n\n        mask = tf.not_equal(captions_in, 0)",
        why="tf.not_equal for the mask",
    ),
    Edit(
        "captioner.sample",
        old='tokens = ops.cast(ops.argmax(logits, axis=-1), "int32")',
        new="import tensorflow as tf\n\n"
        "        tokens = tf.argmax(logits, axis=-1, output_type=tf.int32)",
        why="tf.argmax with output_type",
    ),
    Edit(
        "transformer.positional_encoding",
        old="ops.power(ops.cast(10000.0, inputs.dtype), -exponent)",
        new="ops.exp(-exponent * ops.log(ops.cast(10000.0, inputs.dtype)))",
        why="exp(-e log 10000) instead of a power",
    ),
    Edit(
        "transformer.multi_head_attention",
        old='ops.einsum("nthd,nshd->nhts", Q, K)',
        new="ops.matmul(ops.transpose(Q, (0, 2, 1, 3)), ops.transpose(K, (0, 2, 3, 1)))",
        why="scores with transposes and matmul instead of einsum",
    ),
    Edit(
        "transformer.captioner",
        old="ops.mean(weights, axis=1)",
        new="ops.sum(weights, axis=1) / ops.cast(ops.shape(weights)[1], weights.dtype)",
        why="mean over heads written as a sum divided by the head count",
    ),
    Edit(
        "transformer.causal_mask",
        old="    i = ops.arange(length)\n    return ops.expand_dims(i, 1) >= ops.expand_dims(i, 0)",
        new='    return ops.cast(ops.tril(ops.ones((length, length))), "bool")',
        why="ops.tril of ones, cast to bool",
    ),
    Edit(
        "transformer.causal_mask",
        old="    i = ops.arange(length)\n    return ops.expand_dims(i, 1) >= ops.expand_dims(i, 0)",
        new='    return ops.logical_not(ops.cast(ops.triu(ops.ones((length, length)), k=1), "bool"))',
        why="not the strict upper triangle (ops.triu, k=1)",
    ),
    Edit(
        "transformer.causal_mask",
        old="return ops.expand_dims(i, 1) >= ops.expand_dims(i, 0)",
        new="return i[None, :] <= i[:, None]",
        why="indexing with None, comparison written the other way round",
    ),
    Edit(
        "transformer.decoder_layer",
        old="        mask = _causal_mask(T)[None]  # (1, T, T)\n        if padding_mask is not None:\n"
        '            mask = ops.logical_and(mask, ops.cast(padding_mask, "bool")[:, None, :])  # (N, T, T)\n',
        new="        mask = _causal_mask(T)\n        if padding_mask is not None:\n"
        '            keys = ops.expand_dims(ops.cast(padding_mask, "bool"), 1)  # (N, 1, T)\n'
        "            mask = ops.logical_and(keys, ops.expand_dims(mask, 0))  # (N, T, T)\n",
        why="padding mask first, combined with the causal mask the other way round (expand_dims)",
    ),
    Edit(
        "transformer.decoder_layer",
        old="        mask = _causal_mask(T)[None]  # (1, T, T)\n        if padding_mask is not None:\n"
        '            mask = ops.logical_and(mask, ops.cast(padding_mask, "bool")[:, None, :])  # (N, T, T)\n',
        new="        if padding_mask is None:\n"
        '            padding_mask = ops.ones(ops.shape(inputs)[:2], "bool")\n'
        '        mask = ops.where(ops.cast(padding_mask, "bool")[:, None, :], _causal_mask(T)[None], False)\n',
        why="an all-True padding mask when none is given; masks combined with ops.where",
    ),
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
    # lesson 07: metrics.cider_d (variants)
    Edit(
        "metrics.cider_d",
        old="tf * (log_n - math.log(max(1, df.get(gram, 0))))",
        new="tf * math.log(num_images / max(1, df.get(gram, 0)))",
        why="idf as log(N / max(1, df)) in one log",
    ),
    Edit(
        "metrics.cider_d",
        old="dot = sum(min(w, vec_s[n].get(g, 0.0)) * vec_s[n].get(g, 0.0) for g, w in vec_c[n].items())",
        new="dot = sum(min(vec_c[n][g], vec_s[n][g]) * vec_s[n][g] for g in vec_c[n].keys() & vec_s[n].keys())",
        why="the dot product over the n-grams both captions share (a set intersection)",
    ),
    Edit(
        "metrics.cider_d",
        old="    if document_frequency is None:\n"
        "        df = Counter()\n"
        "        for group in references:\n"
        "            df.update({gram for words in group for gram in ngram_counts(words)})  # once per image\n"
        "        num_images = len(references)\n"
        "    else:\n"
        "        df, num_images = document_frequency.counts, document_frequency.num_images\n",
        new="    if document_frequency is None:\n"
        "        from kcaption.evaluation.cider import DocumentFrequency\n\n"
        "        document_frequency = DocumentFrequency.from_references(references)\n"
        "    df, num_images = document_frequency.counts, document_frequency.num_images\n",
        why="df from the kit's DocumentFrequency.from_references",
    ),
    # lesson 07: decoding.beam_search (variants)
    Edit(
        "decoding.beam_search",
        old="    scores = ops.zeros((n, 1)) + ops.array([0.0] + [-np.inf] * (k - 1))",
        new="    scores = ops.zeros((n, 1)) + ops.array([0.0] + [-1e9] * (k - 1))",
        why="-1e9 instead of -inf for the copies at step 0 (as keras_hub's BeamSampler)",
    ),
    Edit(
        "decoding.beam_search",
        old="        state = keras.tree.map_structure(lambda s, rows=rows: ops.take(s, rows, axis=0), state)",
        new=(
            "        import tensorflow as tf\n\n"
            "        state = tf.nest.map_structure(lambda s, rows=rows: tf.gather(s, rows), state)"
        ),
        why="tf.nest.map_structure and tf.gather for the state",
    ),
    Edit(
        "decoding.beam_search",
        old="    scores, order = ops.top_k(scores / penalty, k)  # (n, k), best first",
        new="    order = ops.argsort(-(scores / penalty), axis=-1)\n"
        "    scores = ops.take_along_axis(scores / penalty, order, axis=1)",
        why="ops.argsort of the negated scores for the final ranking",
    ),
    # lesson 07: transformer.kv_cache (variants)
    Edit(
        "transformer.kv_cache",
        old='        scores = ops.einsum("nqhd,nshd->nhqs", Q, K) / ops.sqrt(ops.cast(d, Q.dtype))  # (N, h, 1, t+1)\n'
        '        heads = ops.einsum("nhqs,nshd->nqhd", ops.softmax(scores, axis=-1), V)  # (N, 1, h, d)\n',
        new="        Q, K, V = (ops.transpose(z, (0, 2, 1, 3)) for z in (Q, K, V))  # (N, h, *, d)\n"
        "        scores = ops.matmul(Q, ops.transpose(K, (0, 1, 3, 2))) / ops.sqrt(ops.cast(d, Q.dtype))\n"
        "        heads = ops.transpose(ops.matmul(ops.softmax(scores, axis=-1), V), (0, 2, 1, 3))\n",
        why="heads moved to axis 1 with transposes, scores and sums with matmul",
    ),
    Edit(
        "transformer.kv_cache",
        old="        Wq, bq, Wk, bk, Wv, bv, Wo, bo = (ops.cast(w, inputs.dtype) for w in attention.weights)\n",
        new="        Wq, bq, Wk, bk, Wv, bv, Wo, bo = (\n"
        "            ops.cast(getattr(attention, name), inputs.dtype) for name in (\"Wq\", \"bq\", \"Wk\", \"bk\", \"Wv\", \"bv\", \"Wo\", \"bo\")\n"
        "        )\n",
        why="the weights read by name, each cast to the inputs' dtype",
    ),
    # lesson 08: backprop.rnn_step (variants)
    Edit(
        "backprop.rnn_step",
        old="dz = dnext_h * (1 - next_h * next_h)",
        new="dz = dnext_h * (1 - ops.square(next_h))",
        why="ops.square for tanh(z)^2",
    ),
    Edit(
        "backprop.rnn_step",
        old="    dWx = ops.matmul(ops.transpose(x), dz)  # (D, H)\n"
        "    dWh = ops.matmul(ops.transpose(prev_h), dz)  # (H, H)\n"
        "    db = ops.sum(dz, axis=0)  # (H,)\n",
        new='    dWx = ops.einsum("nd,nh->dh", x, dz)\n'
        '    dWh = ops.einsum("nk,nh->kh", prev_h, dz)\n'
        "    db = ops.matmul(ops.ones_like(dz[:, 0]), dz)\n",
        why="einsum for the weight gradients, a matmul with ones for db",
    ),
    # lesson 08: backprop.rnn (variants)
    Edit(
        "backprop.rnn",
        old="    dWx, dWh, db = ops.zeros_like(Wx), ops.zeros_like(Wh), ops.zeros_like(Wh[0])\n"
        "    dxs = []\n"
        "    for t in reversed(range(x.shape[1])):\n"
        "        prev_h = h0 if t == 0 else h[:, t - 1]\n"
        "        dx_t, dprev, dWx_t, dWh_t, db_t = step_backward(dh[:, t] + dprev, x[:, t], prev_h, h[:, t], Wx, Wh)\n"
        "        dWx, dWh, db = dWx + dWx_t, dWh + dWh_t, db + db_t\n"
        "        dxs.append(dx_t)\n"
        "    return ops.stack(dxs[::-1], axis=1), dprev, dWx, dWh, db",
        new="    dxs, weight_grads = [], []\n"
        "    for t in range(x.shape[1] - 1, -1, -1):\n"
        "        prev_h = h[:, t - 1] if t > 0 else h0\n"
        "        dx_t, dprev, *grads_t = step_backward(dh[:, t] + dprev, x[:, t], prev_h, h[:, t], Wx, Wh)\n"
        "        dxs.insert(0, dx_t)\n"
        "        weight_grads.append(grads_t)\n"
        "    dWx, dWh, db = (ops.sum(ops.stack(g), axis=0) for g in zip(*weight_grads))\n"
        "    return ops.stack(dxs, axis=1), dprev, dWx, dWh, db",
        why="per-step gradients kept in a list and summed at the end; dx inserted at the front",
    ),
    Edit(
        "backprop.rnn",
        old="        dx_t, dprev, dWx_t, dWh_t, db_t = step_backward(dh[:, t] + dprev, x[:, t], prev_h, h[:, t], Wx, Wh)\n",
        new="        dz = (dh[:, t] + dprev) * (1 - h[:, t] ** 2)  # the step written inline\n"
        "        dx_t, dprev = ops.matmul(dz, ops.transpose(Wx)), ops.matmul(dz, ops.transpose(Wh))\n"
        "        dWx_t, dWh_t, db_t = ops.matmul(ops.transpose(x[:, t]), dz), ops.matmul(ops.transpose(prev_h), dz), ops.sum(dz, 0)\n",
        why="the step's backward written inline instead of calling rnn_step_backward",
    ),
    # lesson 08: backprop.embedding (variants)
    Edit(
        "backprop.embedding",
        old="return ops.segment_sum(rows, flat_ids, num_segments=vocab_size)",
        new="return ops.matmul(ops.transpose(ops.one_hot(flat_ids, vocab_size, dtype=rows.dtype)), rows)",
        why="one_hot(ids)^T @ dout",
    ),
    Edit(
        "backprop.embedding",
        old="    return ops.segment_sum(rows, flat_ids, num_segments=vocab_size)  # (V, D)",
        new="    import tensorflow as tf\n\n"
        "    return tf.tensor_scatter_nd_add(ops.zeros((vocab_size, D), rows.dtype), flat_ids[:, None], rows)",
        why="tf.tensor_scatter_nd_add into zeros",
    ),
    Edit(
        "backprop.embedding",
        old="return ops.segment_sum(rows, flat_ids, num_segments=vocab_size)",
        new="return ops.scatter(flat_ids[:, None], rows, (vocab_size, D))",
        why="ops.scatter (TensorFlow's scatter_nd sums the updates of a repeated index)",
    ),
    # lesson 08: backprop.loss (variants)
    Edit(
        "backprop.loss",
        old="probs = ops.softmax(logits, axis=-1)",
        new="probs = ops.exp(ops.log_softmax(logits, axis=-1))",
        why="softmax as exp(log_softmax)",
    ),
    Edit(
        "backprop.loss",
        old="return (probs - onehot) * mask[..., None] / batch_size",
        new="return ops.where(mask[..., None] > 0, probs - onehot, ops.zeros_like(probs)) / batch_size",
        why="ops.where on the mask instead of multiplying by it",
    ),
    # lesson 08: backprop.lstm_step (variants)
    Edit(
        "backprop.lstm_step",
        old="[di * i * (1 - i), df * f * (1 - f), dg * (1 - g * g), do * o * (1 - o)]",
        new="[di * ops.sigmoid(z_i) * ops.sigmoid(-z_i), df * f * (1 - f), dg * (1 - ops.square(ops.tanh(z_g))),\n"
        "         do * o * (1 - o)]",
        why="sigmoid'(z) = sigmoid(z) sigmoid(-z) and tanh'(z) recomputed from z",
    ),
    Edit(
        "backprop.lstm_step",
        old="    dWx = ops.matmul(ops.transpose(x), dz)\n"
        "    dWh = ops.matmul(ops.transpose(prev_h), dz)\n",
        new='    dWx = ops.einsum("nd,nk->dk", x, dz)\n'
        '    dWh = ops.einsum("nh,nk->hk", prev_h, dz)\n',
        why="einsum for the weight gradients",
    ),
]
