"""Peak memory of ``ldw evalset`` and ``ldw ngrams`` does not grow with the corpus (issue 17, point 10).

Each size runs in a fresh process (peak RSS: VmHWM, see benchmarks.corpus_memory). The corpus is the
worst case the issue met: all text on one line. A run of the n-gram counter at
a small chunk makes its buffer full at both sizes, so what is left to grow is
what must not: the corpus held in memory. The margins are generous (tens of
MiB) against differences of hundreds of MiB when the corpus is held whole.

The children tokenize on one thread (``TOKENIZERS_PARALLELISM=false``): each of
the tokenizer's worker threads keeps its own malloc arena, which grows until
that thread has tokenized a full reading piece. That is bounded (threads x one
piece) but at these small sizes its ramp (30-50 MiB) would swamp the signal.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.corpus_memory import ngrams_warehouse, write_corpus

ROOT = Path(__file__).resolve().parents[2]
SIZES_MB = [(0.25, 1.0), pytest.param((0.25, 4.0), marks=pytest.mark.full)]  # 4x by default, 16x with --runslow
MARGIN_MB = 50
CHILD = """
import json, sys
from pathlib import Path
from benchmarks.corpus_memory import child
corpus, tokenizer, fresh, counted = map(Path, sys.argv[1:5])
evalset = child("evalset", corpus, tokenizer, fresh, 0)
ngrams = child("ngrams", corpus, tokenizer, counted, 1 << 16)
print(json.dumps({"evalset": evalset["peak_mb"], "ngrams": ngrams["peak_mb"]}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("sizes", SIZES_MB)
def test_peak_memory_is_flat_in_corpus_size(sizes: tuple[float, float], tiny_runs: list[Path], tmp_path: Path) -> None:
    tokenizer = tiny_runs[0] / "tokenizer"
    counted = ngrams_warehouse(tmp_path / "counted", tokenizer)
    peaks = []
    for size in sizes:
        corpus = write_corpus(tmp_path / f"line-{size}.txt", "line", size)
        args = [str(corpus), str(tokenizer), str(tmp_path / f"fresh-{size}"), str(counted)]
        done = subprocess.run(
            [sys.executable, "-c", CHILD, *args],
            cwd=ROOT,
            env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        peaks.append(json.loads(done.stdout.strip().splitlines()[-1]))
    small, large = peaks
    assert large["evalset"] - small["evalset"] < MARGIN_MB, peaks
    assert large["ngrams"] - small["ngrams"] < MARGIN_MB, peaks
