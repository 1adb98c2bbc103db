"""What the training commands show of the library's messages: the ``keras_bert3d.training`` logger's records,
as plain lines (information on stdout, warnings on stderr), as the commands always printed them."""
import logging
import sys

LOGGER = "keras_bert3d.training"


class _PlainLines(logging.Handler):
    """One record, one line, to the streams of the moment (pytest's captured ones included)."""

    def emit(self, record):
        try:
            stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
            print(self.format(record), file=stream, flush=True)
        except Exception:  # noqa: BLE001 (logging's own rule: a message never stops the run)
            self.handleError(record)


def show_training_messages():
    """Shows the training library's messages on the terminal (once, however often it is called)."""
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(handler, _PlainLines) for handler in logger.handlers):
        logger.addHandler(_PlainLines())
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger
