"""Which evaluation tokens got worse across a loss spike.

For each detected loss spike whose start and end are bracketed by completed
checkpoints — ``step_before`` = the last checkpoint at or before
``step_start``, ``step_after`` = the first checkpoint at or after ``step_end``
— the surprisal rise of every evaluation token between the two checkpoints is
``delta_bits = surprisal_after - surprisal_before``; the ``top_n`` largest
risers (ties broken by token_idx) are kept with their rank (1 = largest rise).
Spikes without such a pair (no checkpoint before, none after, or the trace
ended above the threshold) are skipped.
"""

from __future__ import annotations

import numpy as np


def bracketing_checkpoints(steps: np.ndarray, step_start: int, step_end: int) -> tuple[int, int] | None:
    """(last checkpoint <= step_start, first checkpoint >= step_end), or None when either is missing."""
    steps = np.sort(np.asarray(steps, dtype=np.int64))
    before = steps[steps <= step_start]
    after = steps[steps >= step_end]
    if len(before) == 0 or len(after) == 0:
        return None
    return int(before[-1]), int(after[0])


def top_risers(before: np.ndarray, after: np.ndarray, top_n: int) -> tuple[np.ndarray, np.ndarray]:
    """Token indices of the ``top_n`` largest rises ``after - before`` (descending, ties by index) and the rises."""
    delta = after.astype(np.float32) - before.astype(np.float32)
    order = np.lexsort((np.arange(len(delta)), -delta))[:top_n]
    return order.astype(np.int64), delta[order]
