"""``ldw.testing`` as benchmarks use it: importable without torch, and a clear error where pyGAM is missing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ldw.testing import pygam_reference


def test_importing_the_builders_loads_no_torch(tmp_path: Path) -> None:
    code = "import sys, ldw.testing; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]"


def test_pygam_reference_without_pygam_names_the_missing_dependency(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pygam", None)  # an import of pygam now fails as if it were not installed
    with pytest.raises(ImportError, match=r"pygam_reference needs pyGAM, a test-only dependency: pip install"):
        pygam_reference(np.linspace(0, 1, 30), np.zeros(30))
