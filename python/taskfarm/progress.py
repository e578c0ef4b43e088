"""A one-line progress bar for terminals (tqdm-like, without tqdm)."""
import sys
import time
from typing import Optional, TextIO


def _duration(s: float) -> str:
    s = max(0, int(s + 0.5))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


class ProgressBar:
    """Draws ``name  42%|#####     | 420/1000 [00:03<00:05, 123 tasks/s]`` in place.

    Shown only when `stream` is a terminal, unless `enabled` says otherwise.
    """

    def __init__(self, name: str, stream: Optional[TextIO] = None, enabled: Optional[bool] = None,
                 width: int = 30):
        self.name = name
        self.stream = stream or sys.stderr
        isatty = getattr(self.stream, "isatty", lambda: False)
        self.enabled = isatty() if enabled is None else enabled
        self.width = width
        self.start = time.monotonic()
        self._last_len = 0

    def line(self, done: int, total: int, rate: float, failed: int = 0, state: str = "",
             reason: str = "") -> str:
        """Returns: the bar's text for these numbers (and why the job waits, when it does)."""
        frac = min(1.0, done / total) if total else 0.0
        filled = frac * self.width
        full = int(filled)
        partial = " ▏▎▍▌▋▊▉"[int((filled - full) * 8)] if full < self.width else ""
        bar = ("█" * full + partial).ljust(self.width)
        elapsed = time.monotonic() - self.start
        eta = _duration((total - done) / rate) if rate > 0 and total >= done else "?"
        extra = f", {failed} failed" if failed else ""
        tail = f" {state}" if state and state != "running" else ""
        if reason:
            tail += f": {reason}"
        return (f"{self.name} {frac * 100:3.0f}%|{bar}| {done}/{total} "
                f"[{_duration(elapsed)}<{eta}, {rate:.1f} tasks/s{extra}]{tail}")

    def update(self, done: int, total: int, rate: float, failed: int = 0, state: str = "",
               reason: str = "") -> None:
        if not self.enabled:
            return
        text = self.line(done, total, rate, failed, state, reason)
        pad = " " * max(0, self._last_len - len(text))
        self.stream.write("\r" + text + pad)
        self.stream.flush()
        self._last_len = len(text)

    def close(self) -> None:
        if self.enabled and self._last_len:
            self.stream.write("\n")
            self.stream.flush()
            self._last_len = 0
