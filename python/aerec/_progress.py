"""Progress display: tqdm when installed, a plain line per step otherwise."""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, desc: str, verbose: int = 1, unit: str = "epoch"):
        self.total, self.desc, self.verbose, self.unit = total, desc, verbose, unit
        self.n = 0
        self._bar = None
        self._t0 = time.perf_counter()
        if verbose and total > 0:
            try:
                from tqdm.auto import tqdm
                self._bar = tqdm(total=total, desc=desc, unit=unit, leave=True, file=sys.stderr)
            except ImportError:
                self._bar = None

    def update(self, logs: dict | None = None) -> None:
        self.n += 1
        if not self.verbose:
            return
        text = " ".join(f"{k}={v:.4g}" for k, v in (logs or {}).items() if isinstance(v, (int, float)))
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)
            self._bar.update(1)
        else:
            dt = time.perf_counter() - self._t0
            print(f"{self.desc} {self.unit} {self.n}/{self.total} ({dt:.2f}s) {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
