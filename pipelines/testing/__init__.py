"""Builders of synthetic data and warehouses for tests and benchmarks, as ``polars.testing`` serves polars' users.

Nothing here imports torch: the builders write through the Warehouse API
only, so the app's benchmark (which never loads a model) can use them.

* :func:`build_synthetic_warehouse` / :class:`SyntheticSpec`: every table the
  app reads, with constructed values (sizes up to the Chang et al. scale).
* :func:`write_token_curves_raw`: the token-major raw curves table alone.
* :func:`build_curves_warehouse`: an evaluation set plus given runs of
  :func:`synthetic_curves`, for the metric pipeline.
* :func:`released_schedule`: the 222 checkpoint steps of Chang et al.'s runs;
  :func:`chang_steps` (log-spaced steps of any count), :func:`synthetic_curves`,
  :data:`CHANCE`: realistic curves; :func:`pygam_reference` (needs pyGAM).
"""

from ldw.testing.curve_warehouse import build_curves_warehouse
from ldw.testing.curves import CHANCE, chang_steps, pygam_reference, released_schedule, synthetic_curves
from ldw.testing.synthetic import SPIKE_BUMP_BITS, SyntheticInfo, SyntheticSpec, build_synthetic_warehouse
from ldw.testing.token_major import write_token_curves_raw

__all__ = [
    "CHANCE",
    "SPIKE_BUMP_BITS",
    "SyntheticInfo",
    "SyntheticSpec",
    "build_curves_warehouse",
    "build_synthetic_warehouse",
    "chang_steps",
    "pygam_reference",
    "released_schedule",
    "synthetic_curves",
    "write_token_curves_raw",
]
