"""Progress bars on stderr for the slow steps of a stream build (decoding, teacher, rendering), or none."""

from __future__ import annotations

import sys
from typing import Protocol


class ProgressBar(Protocol):
    """What the build steps call on a bar: advance it and close it."""

    def update(self, n: int = 1) -> object:
        """Advance by ``n`` units."""
        ...

    def close(self) -> None:
        """Finish the bar."""
        ...


class _NullBar:
    """A bar that shows nothing (progress off)."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, desc: str, enabled: bool) -> ProgressBar:
    """Return a tqdm bar counting ``total`` frames on stderr when ``enabled``, else one that shows nothing."""
    if not enabled:
        return _NullBar()
    from tqdm import tqdm  # imported only when a bar is shown: quiet builds and workers never load it

    bar: ProgressBar = tqdm(total=total, desc=desc, unit="frame", leave=False, file=sys.stderr)
    return bar
