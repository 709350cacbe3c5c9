"""Benchmark: peak memory of ``ldw evalset`` and ``ldw ngrams`` against the size of the corpus they read.

Each measurement runs in a fresh process (its peak RSS, see ``peak_rss_mb``) on a
corpus built from Python's bundled docs: ``repeated`` corpora are the same
documents copied until the size is reached, so the distinct n-grams (what the
counts must hold) stay the same while the text grows; ``line`` corpora are all
the documents joined into one line of that size. The evaluation set keeps a
fixed ``--sequences`` windows, so what it stores does not grow either. Peak
memory should then be flat in the corpus size, once the corpus fills the
n-gram counter's chunk (``--chunk-tokens``, 8M tokens by default: the counter
buffers that many tokens before counting them).

    python -m benchmarks.corpus_memory                          # 10, 20, 40 MiB
    python -m benchmarks.corpus_memory --sizes-mb 2 8           # small
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ldw.ngrams.counts import DEFAULT_CHUNK_TOKENS

MB = 1 << 20
KINDS = ("repeated", "line")
COMMANDS = ("evalset", "ngrams")
EVAL_SEQUENCES = 64
SEQ_LEN = 128


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB.

    On Linux ``VmHWM`` of /proc/self/status: getrusage's ``ru_maxrss`` is carried
    over from the parent through fork and exec, so a child of a large process
    would report the parent's peak. Elsewhere ``ru_maxrss`` (KiB on Linux, bytes on macOS).
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def write_corpus(path: Path, kind: str, size_mb: float) -> Path:
    """A corpus file of about ``size_mb`` MiB: the bundled docs repeated (blank-line separated) or as one line."""
    from ldw.corpus import builtin_documents

    docs = builtin_documents()
    if kind == "line":
        block = " ".join(" ".join(doc.split()) for doc in docs)
        separator = " "
    else:
        block = "\n\n".join(docs)
        separator = "\n\n"
    target = int(size_mb * MB)
    written = 0
    with open(path, "w", encoding="utf-8") as handle:
        while written < target:
            text = block[: target - written]
            handle.write(text + separator)
            written += len(text.encode()) + len(separator)
    return path


def train_tokenizer(folder: Path) -> Path:
    """A byte-level BPE tokenizer of 512 tokens, as the reference trainer builds it."""
    from ldw.corpus import builtin_documents
    from ldw.train.bpe import train_bpe_tokenizer

    train_bpe_tokenizer(builtin_documents(), 512, folder)
    return folder


def ngrams_warehouse(folder: Path, tokenizer: Path) -> Path:
    """A warehouse with a small evaluation set (``ldw ngrams`` looks up its tokens)."""
    import ldw

    ldw.open(folder, create=True, progress=False).evalset(
        corpus="builtin", seq_len=SEQ_LEN, n_sequences=EVAL_SEQUENCES, tokenizer_path=str(tokenizer)
    )
    return folder


def child(command: str, corpus: Path, tokenizer: Path, warehouse: Path, chunk_tokens: int) -> dict:
    """Run one command in this process; its peak RSS before and after, and its wall time."""
    import ldw

    baseline = peak_rss_mb()
    started = time.perf_counter()
    if command == "evalset":
        wb = ldw.open(warehouse, create=True, progress=False)
        wb.evalset(corpus=str(corpus), seq_len=SEQ_LEN, n_sequences=EVAL_SEQUENCES, tokenizer_path=str(tokenizer))
    else:
        ldw.open(warehouse, progress=False).ngrams(corpus=str(corpus), chunk_tokens=chunk_tokens)
    seconds = round(time.perf_counter() - started, 2)
    return {"baseline_mb": round(baseline, 1), "peak_mb": round(peak_rss_mb(), 1), "seconds": seconds}


def measure(command: str, corpus: Path, tokenizer: Path, warehouse: Path, chunk_tokens: int) -> dict:
    """``child`` in a fresh Python process (so the peak is this command's alone)."""
    args = [sys.executable, "-m", "benchmarks.corpus_memory", "--child", command, "--chunk-tokens", str(chunk_tokens)]
    args += ["--corpus", str(corpus), "--tokenizer", str(tokenizer), "--warehouse", str(warehouse)]
    done = subprocess.run(args, capture_output=True, text=True, check=False, cwd=Path(__file__).parents[1])
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(sizes_mb: list[float], kinds: list[str], chunk_tokens: int, work: Path) -> list[dict]:
    """Every (command, kind, size) measurement."""
    tokenizer = train_tokenizer(work / "tokenizer")
    counted = ngrams_warehouse(work / "ngrams-wh", tokenizer)
    rows = []
    for kind in kinds:
        for size in sizes_mb:
            corpus = write_corpus(work / f"{kind}-{size}.txt", kind, size)
            for command in COMMANDS:
                warehouse = work / f"evalset-{kind}-{size}" if command == "evalset" else counted
                result = measure(command, corpus, tokenizer, warehouse, chunk_tokens)
                rows.append({"command": command, "corpus": kind, "size_mb": size, **result})
                print(
                    f"{command:<8}{kind:<10}{size:>8.1f}{result['baseline_mb']:>12,.0f}{result['peak_mb']:>12,.0f}"
                    f"{result['seconds']:>10.1f}",
                    flush=True,
                )
            corpus.unlink()
    return rows


def main() -> None:
    """Parse arguments; as the parent, measure every size and write the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", type=float, nargs="+", default=[10, 20, 40], help="corpus sizes in MiB")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS), help="corpus shapes")
    parser.add_argument("--chunk-tokens", type=int, default=DEFAULT_CHUNK_TOKENS, help="n-gram counter chunk")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "corpus_memory.json")
    parser.add_argument("--child", choices=COMMANDS, help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--tokenizer", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--warehouse", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.corpus, args.tokenizer, args.warehouse, args.chunk_tokens)))
        return
    print(f"{'command':<8}{'corpus':<10}{'MiB':>8}{'base MiB':>12}{'peak MiB':>12}{'wall s':>10}")
    with tempfile.TemporaryDirectory() as work:
        rows = run(args.sizes_mb, args.kinds, args.chunk_tokens, Path(work))
    result = {
        "config": {
            "sizes_mb": args.sizes_mb,
            "kinds": args.kinds,
            "sequences": EVAL_SEQUENCES,
            "seq_len": SEQ_LEN,
            "chunk_tokens": args.chunk_tokens,
        },
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
