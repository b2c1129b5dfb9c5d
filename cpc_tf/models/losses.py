"""Contrastive losses with in-batch negatives, correct under any tf.distribute strategy.

Both losses score the local replica's queries against the *global* set of candidates:
inside a replica context the candidates of every replica are gathered with
``ReplicaContext.all_gather`` (which is differentiable), so the negatives are the same
as on a single device holding the whole global batch. Each returns the mean over the
local queries; the training engine divides by the number of replicas before taking
gradients, and the cross-replica gradient sum then equals the global-batch gradient.

Logits are always computed in float32 and reduced with log-sum-exp (softmax cross
entropy from logits), never as exp(score) / sum(exp(...)), which overflows: that was
a bug of the public code of Bajorath et al. 2021.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

_MASK_VALUE = -1e9  # large negative logit for masked self-similarities (float32 safe)


def replica_info() -> tuple[int, tf.Tensor]:
    """(number of replicas in sync, this replica's id) in the current context."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None:  # cross-replica context: behave as a single replica
        return 1, tf.constant(0, tf.int32)
    rid = ctx.replica_id_in_sync_group
    if not isinstance(rid, tf.Tensor):
        rid = tf.constant(rid, tf.int32)
    return ctx.num_replicas_in_sync, tf.cast(rid, tf.int32)


def gather_across_replicas(x: tf.Tensor, axis: int = 0) -> tf.Tensor:
    """Concatenate `x` from every replica along `axis` (identity on one replica).

    Replicas are concatenated in replica-id order, so local row ``i`` of replica
    ``r`` lands at ``r * local_batch + i``. Local batches must have equal sizes
    (the datasets batch with ``drop_remainder=True``).
    """
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return x
    return ctx.all_gather(x, axis=axis)


def _local_offset(local_batch: tf.Tensor) -> tf.Tensor:
    _, rid = replica_info()
    return rid * tf.cast(local_batch, tf.int32)


def info_nce(
    predictions: tf.Tensor, targets: tf.Tensor, gather: bool = True
) -> tuple[tf.Tensor, tf.Tensor]:
    """InfoNCE with in-batch negatives (Bajorath et al. 2021, §2.2.5, eq. 2).

    Args:
      predictions: ``[..., B, D]`` predicted future codes ẑ (local batch B on the
        second-to-last axis; leading axes index independent problems, e.g. the
        prediction step k or a time position).
      targets: ``[..., B, D]`` the true future codes z for the same examples.
      gather: gather the targets of all replicas as candidates (global negatives).

    Returns:
      ``(loss, accuracy)``, each of shape ``[...]``: the cross-entropy of the
      positive among all candidates, averaged over the local batch, and the
      fraction of queries whose best-scoring candidate is the positive.
      With B_global candidates the chance loss is log(B_global).
    """
    predictions = tf.cast(predictions, tf.float32)
    targets = tf.cast(targets, tf.float32)
    batch_axis = targets.shape.rank - 2
    candidates = gather_across_replicas(targets, axis=batch_axis) if gather else targets
    logits = tf.linalg.matmul(predictions, candidates, transpose_b=True)  # [..., B, Bg]
    local_b = tf.shape(predictions)[-2]
    labels = tf.range(local_b, dtype=tf.int32) + (_local_offset(local_b) if gather else 0)
    labels = tf.broadcast_to(labels, tf.shape(logits)[:-1])
    xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    hits = tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), labels), tf.float32)
    return tf.reduce_mean(xent, axis=-1), tf.reduce_mean(hits, axis=-1)


def info_nce_windows(
    predictions: tf.Tensor,
    codes: tf.Tensor,
    *,
    num_negatives: int = 0,
    queue: tf.Tensor | None = None,
    queue_count: tf.Tensor | None = None,
    seed: tf.Tensor | None = None,
    first_position: Any = 0,
    gather: bool = True,
) -> tuple[tf.Tensor, tf.Tensor]:
    """InfoNCE whose candidates are all windows of the global batch (van den Oord et al. 2018).

    This is the objective of the strong CPC implementations (van den Oord et al. 2018,
    §2.3; Rivière et al. 2020, facebookresearch/CPC_audio): every context position
    predicts the next K codes, and the negatives of a prediction are drawn from every
    window of the global batch -- other positions of the same clip as well as other
    clips -- plus, optionally, a queue of codes from earlier batches (He et al. 2020,
    MoCo), so that a small batch still sees hundreds of negatives.

    Args:
      predictions: ``[B, P, K, D]``: the prediction of z_{t+k} made from c_t, for
        context positions t = 0..P-1 and steps k = 1..K (local batch B).
      codes: ``[B, S, D]``: every window (or frame) code of the local batch. The
        target of (b, t, k) is ``codes[b, first_position + t + k]``; queries whose
        target would lie past the end have none and are left out.
      num_negatives: 0 scores each query against every other candidate (a softmax over
        all windows of the global batch and the queue); n > 0 draws n negatives per
        query, uniformly with replacement from the candidates other than the positive
        (CPC_audio draws 128).
      queue: optional ``[Q, D]`` codes of earlier batches, used as extra negatives.
      queue_count: how many leading rows of `queue` hold codes (the rest are empty).
      seed: int ``[2]`` stateless seed of the negative draw. The draw is made for the
        global batch at once and each replica takes its own rows, so the loss under a
        strategy equals the loss of one device holding the global batch.
      first_position: the window index of context position 0 (e.g. T-1 when only c_T
        predicts).
      gather: gather the codes of all replicas as candidates.

    Returns:
      ``(loss, accuracy)``, each ``[K]``: per step, the cross-entropy of the positive
      among its candidates averaged over the local queries, and the fraction of queries
      whose best-scoring candidate is the positive. With M candidates in all the chance
      loss is log(M) for ``num_negatives=0`` and log(n + 1) otherwise.
    """
    predictions = tf.cast(predictions, tf.float32)
    codes = tf.cast(codes, tf.float32)
    local_b, positions = tf.shape(predictions)[0], tf.shape(predictions)[1]
    steps, dim = predictions.shape[2], predictions.shape[3]
    windows = tf.shape(codes)[1]
    all_codes = gather_across_replicas(codes) if gather else codes
    global_b = tf.shape(all_codes)[0]
    candidates = tf.reshape(all_codes, [-1, dim])  # [Bg*S, D]
    in_batch = global_b * windows
    valid = in_batch
    if queue is not None:
        queue = tf.cast(queue, tf.float32)
        count = tf.cast(queue_count if queue_count is not None else tf.shape(queue)[0], tf.int32)
        candidates = tf.concat([candidates, queue], axis=0)
        valid = in_batch + count
    first_row = _local_offset(local_b) if gather else tf.constant(0, tf.int32)
    losses, accs = [], []
    for k in range(1, steps + 1):
        n_t = tf.minimum(positions, windows - first_position - k)  # positions with a target
        queries = tf.reshape(predictions[:, :n_t, k - 1], [-1, dim])  # [B*n_t, D], b-major
        b = tf.repeat(tf.range(local_b), n_t) + first_row
        t = tf.tile(tf.range(n_t), [local_b])
        labels = b * windows + first_position + t + k  # row of the positive in `candidates`
        scores = tf.matmul(queries, candidates, transpose_b=True)  # [B*n_t, M]
        if num_negatives <= 0:
            if queue is not None:  # empty queue rows never compete
                scores = scores + tf.where(
                    tf.range(tf.shape(candidates)[0]) < valid, 0.0, _MASK_VALUE
                )
            logits, target = scores, labels
        else:
            rows = tf.shape(queries)[0]
            draw_seed = tf.zeros([2], tf.int64) if seed is None else tf.cast(seed, tf.int64)
            draw_seed = tf.random.experimental.stateless_fold_in(draw_seed, k)
            drawn = tf.random.stateless_uniform(
                [global_b * n_t, num_negatives],
                draw_seed,
                minval=0,
                maxval=valid - 1,
                dtype=tf.int32,
            )
            start = (first_row * n_t) if gather else 0
            drawn = drawn[start : start + rows]
            drawn = drawn + tf.cast(drawn >= labels[:, None], tf.int32)  # skip the positive
            positive = tf.gather(scores, labels[:, None], batch_dims=1)  # [B*n_t, 1]
            negative = tf.gather(scores, drawn, batch_dims=1)  # [B*n_t, n]
            logits = tf.concat([positive, negative], axis=1)
            target = tf.zeros_like(labels)
        xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=target, logits=logits)
        hits = tf.cast(
            tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), target), tf.float32
        )
        losses.append(tf.reduce_mean(xent))
        accs.append(tf.reduce_mean(hits))
    return tf.stack(losses), tf.stack(accs)


def step_weights(num_steps: int, kind: str = "uniform") -> tf.Tensor:
    """Weights over the k prediction steps, summing to 1.

    ``linear`` weights the nearer future heavier (k, k-1, ..., 1), the option seed
    004 §4 leaves open; ``uniform`` is the plain mean the seed settled on.
    """
    if kind == "uniform":
        w = tf.ones([num_steps], tf.float32)
    elif kind == "linear":
        w = tf.range(num_steps, 0, -1, dtype=tf.float32)
    else:
        raise ValueError(f"unknown step weighting {kind!r}")
    return w / tf.reduce_sum(w)


def nt_xent(
    z1: tf.Tensor, z2: tf.Tensor, temperature: float = 0.5, gather: bool = True
) -> tuple[tf.Tensor, tf.Tensor]:
    """NT-Xent, the normalised temperature-scaled cross entropy of SimCLR (Spijkervet & Burgoyne
    2021, §3.4).

    Views are L2-normalised, scored by cosine similarity / τ against all 2N views of
    the global batch with the self-similarity masked out, so each query has 2N-1
    candidates of which one is its positive. Both directions (view 1 → view 2 and
    view 2 → view 1) are averaged.

    Returns ``(loss, accuracy)`` as scalars (means over the 2B local queries).
    With unrelated views the loss is about log(2N-1).
    """
    z1 = tf.math.l2_normalize(tf.cast(z1, tf.float32), axis=-1)
    z2 = tf.math.l2_normalize(tf.cast(z2, tf.float32), axis=-1)
    all1 = gather_across_replicas(z1) if gather else z1
    all2 = gather_across_replicas(z2) if gather else z2
    local_b = tf.shape(z1)[0]
    global_b = tf.shape(all1)[0]
    own = tf.range(local_b, dtype=tf.int32) + (_local_offset(local_b) if gather else 0)
    self_mask = tf.one_hot(own, global_b, on_value=_MASK_VALUE, off_value=0.0, dtype=tf.float32)
    inv_t = 1.0 / temperature
    # queries from view 1: candidates [view-1 block (self masked) | view-2 block]
    logits1 = tf.concat(
        [
            tf.matmul(z1, all1, transpose_b=True) * inv_t + self_mask,
            tf.matmul(z1, all2, transpose_b=True) * inv_t,
        ],
        axis=1,
    )
    labels1 = own + global_b
    # queries from view 2: candidates [view-1 block | view-2 block (self masked)]
    logits2 = tf.concat(
        [
            tf.matmul(z2, all1, transpose_b=True) * inv_t,
            tf.matmul(z2, all2, transpose_b=True) * inv_t + self_mask,
        ],
        axis=1,
    )
    labels2 = own
    logits = tf.concat([logits1, logits2], axis=0)
    labels = tf.concat([labels1, labels2], axis=0)
    xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    hits = tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), labels), tf.float32)
    return tf.reduce_mean(xent), tf.reduce_mean(hits)
