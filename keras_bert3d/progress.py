"""The one progress bar of the long-running jobs (`bert3d to-tfrecord`, `bert3d flow`, `bert3d evaluate`, the timeline).

Uses tqdm when it is installed (it is not a dependency); otherwise a one-line counter
rewritten in place on stderr, at most a few times per second.
"""
import sys
import time


class Progress:
    """``with Progress(total, "flow") as bar: bar.update(1)``; ``enabled=False`` prints nothing."""

    def __init__(self, total, description, enabled=True, stream=None, min_interval=0.5, unit="video"):
        if total < 0:
            raise ValueError(f"total must be >= 0; received {total}")
        self.total = int(total)
        self.description = description
        self.unit = unit
        self.enabled = bool(enabled)
        self.stream = stream or sys.stderr
        self.min_interval = min_interval
        self.count = 0
        self._start = time.monotonic()
        self._last = 0.0
        self._tqdm = None
        if self.enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self._tqdm = tqdm(total=self.total, desc=description, unit=unit, file=self.stream)

    def update(self, n=1, postfix=None):
        self.count += n
        if not self.enabled:
            return
        if self._tqdm is not None:
            self._tqdm.update(n)
            if postfix:
                self._tqdm.set_postfix_str(postfix)
            return
        now = time.monotonic()
        if now - self._last >= self.min_interval or self.count >= self.total:
            self._last = now
            self._print(postfix)

    def _print(self, postfix=None, end="\r"):
        elapsed = time.monotonic() - self._start
        rate = self.count / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.count) / rate if rate > 0 else float("nan")
        percent = 100.0 * self.count / self.total if self.total else 100.0
        line = (f"{self.description}: {self.count}/{self.total} ({percent:.0f}%) "
                f"{rate:.2f} {self.unit}/s, {elapsed:.0f}s elapsed, ~{left:.0f}s left")
        if postfix:
            line += f" [{postfix}]"
        self.stream.write(line + end)
        self.stream.flush()

    def close(self):
        if not self.enabled:
            return
        if self._tqdm is not None:
            self._tqdm.close()
        else:
            self._print(end="\n")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
