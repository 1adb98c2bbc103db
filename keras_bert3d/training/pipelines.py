"""The tf.data pipelines of a training run (`keras_bert3d.training.train`, `keras_bert3d.training.tune`).

`build_indexes` makes the video indexes of the configured subsets; `Pipelines` gives the training batches of
each epoch and the validation batches, sharing one bad-video counter; `fit` runs ``model.fit`` on them;
`counted_dataset` is `keras_bert3d.data.pipeline.make_dataset` with the counter it counts into. Epoch ``e``
is drawn from ``epoch_seed(seed, e)`` (its clip sampling, augmentation and order), whatever happened before,
so a resumed run reads the same batches as an uninterrupted one.
"""
import functools
import warnings

import numpy as np


def epoch_seed(seed, epoch):
    """The data seed of ``epoch``: a function of (seed, epoch) only, so a resumed run draws the same clips."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def fit(model, *args, **kwargs):
    """``model.fit`` without Keras' warning at the end of each validation pass (the validation pipelines
    have no known length, so running out of data is how a pass ends)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        return model.fit(*args, **kwargs)


def counted_dataset(*args, **kwargs):
    """``(dataset, counter)``: ``make_dataset(*args, **kwargs)`` and the `BadVideoCounter` it counts the
    videos it skips into (every caller in keras_bert3d.training reads the counter here)."""
    from keras_bert3d.data.pipeline import make_dataset

    dataset, counter = make_dataset(*args, **kwargs)
    return dataset, counter


def build_indexes(data):
    from keras_bert3d.data.indexes import build_index

    def index(subset, modality):
        return build_index(data["dataset"], data["root"], data["annotations"], split=data["split"], subset=subset,
                           modality=modality, classes=data["classes"])

    return index


class Pipelines:
    """The training batches of each epoch and the validation batches, sharing one bad-video counter."""

    def __init__(self, data, preprocessing, train_index, val_index, num_classes, seed, steps_per_epoch,
                 counter=None, augment="host"):
        from keras_bert3d.data.bad_videos import BadVideoCounter

        self.data, self.prep, self.num_classes, self.seed = data, preprocessing, num_classes, seed
        self.augment = augment  # "device": uint8 frames + windows for models.clip_augmenter.augmented_model
        self.train_index, self.val_index, self.steps = train_index, val_index, steps_per_epoch
        self.counter = counter or BadVideoCounter()
        self.one_hot = bool(data["mixup"] or data["cutmix"])

    def _source(self, index, tfrecord):
        if self.data["source"] == "tfrecord" and tfrecord:
            return tfrecord, "tfrecord"
        return index, self.data["source"] if self.data["source"] != "tfrecord" else "auto"

    def train_epoch(self, epoch, skip=0, batch_size=None, index=None):
        """Exactly ``steps_per_epoch`` batches (a pass short of skipped videos is topped up from the start of
        the pass again), minus the first ``skip``. The same batches however often the dataset is opened."""
        source, kind = self._source(self.train_index if index is None else index, self.data["tfrecord"])
        dataset, _ = counted_dataset(source, self.prep, "train", batch_size or self.data["batch_size"], source=kind,
                               seed=epoch_seed(self.seed, epoch), strict=self.data["strict"],
                               mixup=self.data["mixup"], cutmix=self.data["cutmix"], num_classes=self.num_classes,
                               counter=self.counter, reshuffle_each_iteration=False, augment=self.augment)
        dataset = dataset.repeat().take(self.steps)
        return dataset.skip(skip) if skip else dataset

    def train_epochs(self, first, last):
        """Epochs ``first .. last - 1`` back to back (``model.fit`` with ``steps_per_epoch``)."""
        return functools.reduce(lambda a, b: a.concatenate(b), (self.train_epoch(e) for e in range(first, last)))

    def validation(self, batch_size=None, index=None):
        import tensorflow as tf

        source, kind = self._source(self.val_index if index is None else index, self.data["val_tfrecord"])
        dataset, _ = counted_dataset(source, self.prep, "val", batch_size or self.data["batch_size"], source=kind,
                               strict=self.data["strict"], counter=self.counter, augment=self.augment)
        if self.one_hot:
            dataset = dataset.map(lambda x, y: (x, tf.one_hot(y, self.num_classes)))
        return dataset
