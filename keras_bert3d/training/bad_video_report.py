"""`BadVideoReport`: a Keras callback that reports, at the end of each epoch, the videos the input pipeline skipped.

The pipeline (`keras_bert3d.data.pipeline.make_dataset`) counts them in a `BadVideoCounter`; this callback reads
the counter's growth per epoch, prints a line when something was skipped and logs it on the
``keras_bert3d.data`` logger.
"""
import keras

from keras_bert3d.data.bad_videos import BadVideoCounter, logger
from keras_bert3d.validation import check_choice


class BadVideoReport(keras.callbacks.Callback):
    """Reports at the end of each epoch how many videos were skipped during it, per reason.

    Args:
        counter: the `BadVideoCounter` of the training (and validation) datasets, e.g. the
            ``bad_videos`` that `keras_bert3d.data.pipeline.make_dataset` returns.
        verbose: 1 prints the line (when something was skipped), 0 only logs it.
    """

    def __init__(self, counter, verbose=1):
        super().__init__()
        if not isinstance(counter, BadVideoCounter):
            raise ValueError(f"`counter` must be a BadVideoCounter; received counter={counter!r}")
        check_choice("verbose", verbose, (0, 1))
        self.counter = counter
        self.verbose = verbose
        self._seen = {}
        self.history = []  # per epoch: {category: skips during that epoch}

    def on_epoch_end(self, epoch, logs=None):
        now = self.counter.counts()
        during = {name: count - self._seen.get(name, 0) for name, count in now.items()
                  if count - self._seen.get(name, 0) > 0}
        self._seen = now
        self.history.append(during)
        line = f"Epoch {epoch + 1}: {self.counter.summary(during)}"
        if during:
            logger.warning(line)
            if self.verbose:
                print(line, flush=True)
        else:
            logger.info(line)
