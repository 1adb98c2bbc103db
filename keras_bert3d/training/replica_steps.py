"""The per-replica pieces of the custom training loop `keras_bert3d.training.distributed.custom_fit`.

`ReplicaSteps`: the compiled steps that ``strategy.run`` runs on every replica: a training step (the loss
over the global batch, gradients accumulated in SyncOnRead variables, the optimizer applied every
``accumulation`` batches), a validation step, the synchronisation of replica-local state (BatchNorm moving
statistics averaged, SeedGenerator states taken from the chief) and a cluster-wide gather of a few floats.
`EpochBatches`: one pass over a distributed dataset that stops on every worker together, when every worker
is exhausted or after a batch limit. The rules they implement are described in keras_bert3d.training.distributed.
"""
import keras
import tensorflow as tf


def _per_example_loss(loss_fn):
    if isinstance(loss_fn, keras.losses.Loss):
        config = dict(loss_fn.get_config(), reduction=None)
        loss_fn = type(loss_fn).from_config(config)

    def compute(y, logits):
        logits = tf.cast(logits, tf.float32)
        if loss_fn is None:
            if y.shape.rank == 1:
                return keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
            return keras.losses.categorical_crossentropy(y, logits, from_logits=True)
        out = tf.cast(loss_fn(y, logits), tf.float32)
        if out.shape.rank != 1:
            raise ValueError(f"loss_fn must give one loss per example (shape (B,)); got shape {out.shape}")
        return out

    return compute


def _correct(y, logits):
    true = tf.argmax(y, axis=-1) if y.shape.rank > 1 else tf.cast(y, tf.int64)
    return tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, axis=-1), true), tf.float32))


class ReplicaSteps:
    """The compiled per-replica steps of one `custom_fit` call."""

    def __init__(self, strategy, model, optimizer, loss_fn, accumulation, jit_compile):
        self.strategy, self.model, self.optimizer, self.accumulation = strategy, model, optimizer, accumulation
        self.per_example = _per_example_loss(loss_fn)
        self.variables = list(model.trainable_variables)
        # jit_compile "auto" is Keras' rule for a tf.distribute strategy, which this loop always runs under: no XLA.
        self.forward = tf.function(self._forward, jit_compile=True) if jit_compile is True else self._forward
        self.accumulators = []
        if accumulation > 1:
            with strategy.scope():  # SyncOnRead: each replica adds its own local gradients
                self.accumulators = [tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False, name="grad_accumulator",
                                                 synchronization=tf.VariableSynchronization.ON_READ,
                                                 aggregation=tf.VariableAggregation.SUM) for v in self.variables]
        # Each replica updates its own copy of these (aggregation "none"): BatchNorm moving statistics (float) and
        # SeedGenerator states (int; a worker that ran out of data draws fewer masks).
        weights = {id(w) for w in model.weights}
        self.rng_states = [v for v in model.variables if id(v) not in weights]
        local = [v for v in model.variables if not v.trainable and getattr(v, "aggregation", "none") == "none"]
        self.stats_vars = [v for v in local if str(v.dtype) in ("float16", "bfloat16", "float32", "float64")]
        self.int_vars = [v for v in local if "int" in str(v.dtype)]
        self.train_steps = {apply: tf.function(lambda batch, apply=apply: strategy.reduce(
            "SUM", strategy.run(self._replica_train, args=(batch, apply)), axis=None), reduce_retracing=True)
            for apply in (False, True)}
        self.val_step = tf.function(lambda batch: strategy.reduce(
            "SUM", strategy.run(self._replica_val, args=(batch,)), axis=None), reduce_retracing=True)
        self.sync = tf.function(lambda: strategy.run(self._replica_sync))
        self.reset = tf.function(lambda: strategy.run(self._replica_reset))
        self._gather = tf.function(lambda values: strategy.run(self._replica_gather, args=(values,)))

    def _forward(self, x, y, global_count):
        with tf.GradientTape() as tape:
            logits = self.model(x, training=True)
            per_example = self.per_example(y, logits)
            loss = tf.reduce_sum(per_example) / global_count
            if self.model.losses:  # regularisation: counted once over the replicas
                regularisation = tf.add_n([tf.cast(x, tf.float32) for x in self.model.losses])
                loss += regularisation / self.strategy.num_replicas_in_sync
            scaled = self.optimizer.scale_loss(loss / self.accumulation)
        grads = tape.gradient(scaled, self.variables)
        self._none = [g is None for g in grads]
        grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g) for g, v in zip(grads, self.variables)]
        return grads, tf.stack([tf.reduce_sum(per_example), _correct(y, logits)])

    def _replica_train(self, batch, apply):
        x, y = batch[0], batch[1]
        count = tf.cast(tf.shape(y)[0], tf.float32)
        context = tf.distribute.get_replica_context()
        global_count = tf.maximum(context.all_reduce("SUM", count), 1.0)
        grads, stats = tf.cond(count > 0, lambda: self.forward(x, y, global_count),
                               lambda: ([tf.zeros_like(v) for v in self.variables], tf.zeros([2])))
        if self.accumulators:
            for acc, g in zip(self.accumulators, grads):
                acc.assign_add(g)
            if apply:
                grads = [acc.read_value() for acc in self.accumulators]
        if apply:
            grads = [None if none else g for g, none in zip(grads, self._none)]
            self.optimizer.apply(grads, self.variables)
            if self.accumulators:
                self._replica_reset()
        return tf.concat([stats, [count]], axis=0)

    def _replica_val(self, batch):
        x, y = batch[0], batch[1]
        count = tf.cast(tf.shape(y)[0], tf.float32)
        stats = tf.cond(count > 0, lambda: self._evaluate(x, y), lambda: tf.zeros([2]))
        return tf.concat([stats, [count]], axis=0)

    def _evaluate(self, x, y):
        logits = self.model(x, training=False)
        return tf.stack([tf.reduce_sum(self.per_example(y, logits)), _correct(y, logits)])

    def _replica_sync(self):
        """Averages the float local variables over the replicas and gives every replica the first replica's
        (the chief's) int ones, so that all workers hold the state that the chief checkpoints."""
        context = tf.distribute.get_replica_context()
        if self.stats_vars:
            means = context.all_reduce("MEAN", [tf.identity(v.value) for v in self.stats_vars])
            for v, mean in zip(self.stats_vars, means):
                v.assign(mean)
        for v in self.int_vars:
            gathered = context.all_gather(tf.identity(v.value)[None], axis=0)
            v.assign(gathered[0])

    def _replica_reset(self):
        for acc in self.accumulators:
            acc.assign(tf.zeros_like(acc))

    def _replica_gather(self, values):
        return tf.distribute.get_replica_context().all_gather(values[None], axis=0)

    def gather(self, *values):
        """``values`` (floats) of every replica of the cluster, as a numpy array (replicas, len(values))."""
        local = self.strategy.experimental_local_results(self._gather(tf.constant(values, tf.float64)))
        self.local_replicas = len(local)
        return local[0].numpy()


class EpochBatches:
    """The synchronised per-replica batches of one pass over ``dataset_fn(context, epoch)``: all workers stop
    together, when every worker is exhausted or after ``limit`` batches (``skip`` already consumed). ``counter``
    (a `BadVideoCounter`) is what the datasets count their skipped videos into."""

    def __init__(self, strategy, dataset_fn, epoch, skip=0, limit=None, counter=None):
        self.strategy, self.dataset_fn, self.epoch, self.skip, self.limit = strategy, dataset_fn, epoch, skip, limit
        self.counter = counter
        self._starts = []

    def _make(self, context):
        dataset = self.dataset_fn(context, self.epoch)
        if self.counter is not None:
            self._starts.append(self.counter.total)
        return dataset.skip(self.skip) if self.skip else dataset

    def __iter__(self):
        iterator = iter(self.strategy.distribute_datasets_from_function(self._make))
        step = self.skip
        while self.limit is None or step < self.limit:
            optional = iterator.get_next_as_optional()
            if not bool(optional.has_value()):
                return
            step += 1
            yield optional.get_value()

    @property
    def bad_videos(self):
        """Videos this worker's pipelines skipped during the pass."""
        return sum(self.counter.total - start for start in self._starts)
