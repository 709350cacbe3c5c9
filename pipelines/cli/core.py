"""The core ``ldw`` commands: init, ingest, evalset, sweep, status, doctor, demo, app."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ldw.cli.common import (
    DEFAULT_WAREHOUSE,
    QuietOpt,
    WaitOpt,
    WarehouseArg,
    WarehouseFlag,
    WarehouseOpt,
    console,
    err,
    one_warehouse,
)
from ldw.errors import SettingsError
from ldw.ingest.config import IngestConfig
from ldw.sweep.config import EvalSetConfig, SweepConfig
from ldw.workbench import Workbench


def init(
    warehouse: WarehouseOpt = DEFAULT_WAREHOUSE,
    storage: Annotated[
        Optional[str],
        typer.Option(help="fsspec URL for the Parquet tables, e.g. s3://bucket/prefix (default: WAREHOUSE/parquet)."),
    ] = None,
    wait: WaitOpt = False,
) -> None:
    """Create an empty warehouse; with --storage its Parquet tables live on object storage."""
    from ldw.warehouse import Warehouse

    Workbench.open(warehouse, create=True, storage=storage, wait=wait)
    wh = Warehouse.open(warehouse, read_only=True)
    console.print(f"warehouse {wh.root}: catalog {wh.catalog_path.name}, Parquet tables in {wh.store.url}")


def ingest(
    paths: Annotated[
        list[str],
        typer.Argument(help="Run folders (or folders of run folders), or hf:ORG/NAME Hugging Face Hub repositories."),
    ],
    warehouse: WarehouseOpt = DEFAULT_WAREHOUSE,
    name: Annotated[Optional[str], typer.Option(help="Run name (one run only); default: the folder name.")] = None,
    tokenizer: Annotated[Optional[Path], typer.Option(help="Tokenizer folder when the run has none.")] = None,
    tokens_per_step: Annotated[
        Optional[int], typer.Option(help="Training tokens per step (e.g. 2097152 for Pythia).")
    ] = None,
    log: Annotated[
        Optional[Path],
        typer.Option(
            help="Training log (one run only): trainer_state.json, a TensorBoard file or folder, .csv, .jsonl."
        ),
    ] = None,
    revisions: Annotated[
        Optional[list[str]],
        typer.Option(help="hf: only: branches to take, names or glob patterns ('step*'; comma-separated or repeated)."),
    ] = None,
    every: Annotated[
        Optional[int], typer.Option(help="hf: only: every N-th chosen branch in step order (the last always).")
    ] = None,
    quiet: QuietOpt = False,
    wait: WaitOpt = False,
) -> None:
    """Register runs: checkpoints (HF Trainer, stepN, save_pretrained folders, Hub branches), tokenizer, log."""
    config = IngestConfig(
        name=name,
        tokenizer=tokenizer,
        tokens_per_step=tokens_per_step,
        log=log,
        revisions=tuple(revisions) if revisions else None,
        every=every,
    )
    for result in Workbench(warehouse, progress=not quiet, wait=wait).ingest(paths, config):
        console.print(
            f"[bold]{result.run_id}[/bold] ({result.kind}) from {result.source}: {result.n_checkpoints} checkpoints, "
            f"{result.n_new} new or changed, {result.n_duplicates} duplicate weights, {result.n_trace_rows} trace rows"
        )
        for warning in result.warnings:
            err.print(f"[yellow]warning[/yellow] {warning}")


def evalset(
    warehouse: WarehouseOpt = DEFAULT_WAREHOUSE,
    corpus: Annotated[str, typer.Option(help="'builtin' or a .txt/.jsonl/.parquet file of documents.")] = "builtin",
    split: Annotated[
        str, typer.Option(help="all | heldout | train (heldout = the documents the reference trainer left out).")
    ] = "all",
    seq_len: Annotated[int, typer.Option(help="Tokens per evaluation sequence.")] = 128,
    sequences: Annotated[Optional[int], typer.Option(help="Sample this many sequences (default: all).")] = None,
    positions: Annotated[
        Optional[int], typer.Option(help="Score K sampled positions per sequence (default: every position).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    prefix_token_id: Annotated[
        Optional[int], typer.Option(help="Prepend this token (e.g. BOS) so position 0 is scored too.")
    ] = None,
    tokenizer: Annotated[Optional[Path], typer.Option(help="Tokenizer folder (default: the first run's).")] = None,
    replace: Annotated[bool, typer.Option(help="Replace a different existing set (drops its surprisal).")] = False,
    wait: WaitOpt = False,
) -> None:
    """Build the tokens-in-context evaluation set every run is scored on."""
    config = EvalSetConfig(
        corpus=corpus,
        split=split,
        seq_len=seq_len,
        n_sequences=sequences,
        positions_per_sequence=positions,
        seed=seed,
        prefix_token_id=prefix_token_id,
        tokenizer_path=str(tokenizer) if tokenizer else "",
    )
    result = Workbench(warehouse, wait=wait).evalset(config, replace=replace)
    state = "built" if result.written else "already present"
    console.print(f"evaluation set {state}: {result.sequences} sequences, {result.tokens} tokens scored")


def sweep(
    warehouse: WarehouseOpt = DEFAULT_WAREHOUSE,
    run: Annotated[Optional[list[str]], typer.Option(help="Only these run ids (repeatable).")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda[:i].")] = "auto",
    batch_size: Annotated[
        Optional[int],
        typer.Option(help="Sequences per forward pass (default: chosen for the device; halved on out-of-memory)."),
    ] = None,
    precision: Annotated[
        str,
        typer.Option(
            help="fp32 (exact: within 0.01 bits of float64) | tf32 | bf16 | fp16 (faster; error measured and stored)."
        ),
    ] = "fp32",
    fused_head: Annotated[
        str,
        typer.Option(
            help="none | liger | cce: a fused unembedding + cross-entropy kernel (CUDA, bf16/fp16, package installed)."
        ),
    ] = "none",
    compile: Annotated[bool, typer.Option(help="torch.compile the transformer body.")] = False,
    shard: Annotated[
        Optional[str],
        typer.Option(
            help="I/N: only every N-th checkpoint from the I-th (0-based), "
            "e.g. $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT."
        ),
    ] = None,
    executor: Annotated[
        str,
        typer.Option(
            help="local (this process) | ray (one task per checkpoint on a Ray cluster; needs the 'cluster' extra)."
        ),
    ] = "local",
    ray_address: Annotated[
        Optional[str],
        typer.Option(
            help="Ray cluster for --executor ray (host:port, auto, ray://...); default: $RAY_ADDRESS, else a local one."
        ),
    ] = None,
    prefetch: Annotated[
        int, typer.Option(help="Checkpoints fetched and loaded ahead of the one being scored (0: none).")
    ] = 1,
    keep_weights: Annotated[
        bool, typer.Option(help="Keep downloaded Hub checkpoints in the Hugging Face cache (default: remove each).")
    ] = False,
    fetch_attempts: Annotated[
        int, typer.Option(help="Download attempts per Hub checkpoint before it is recorded as failed.")
    ] = 3,
    quiet: QuietOpt = False,
    wait: WaitOpt = False,
) -> None:
    """Score every evaluation token under every pending checkpoint; resumes where it stopped."""
    config = SweepConfig(
        runs=tuple(run) if run else None,
        device=device,
        batch_size=batch_size,
        shard=_parse_shard(shard),
        executor=executor,
        ray_address=ray_address,
        prefetch=prefetch,
        keep_weights=keep_weights,
        fetch_attempts=fetch_attempts,
        precision=precision,
        fused_head=fused_head,
        compile=compile,
    )
    summary = Workbench(warehouse, progress=not quiet, wait=wait).sweep(config)
    rate = summary.tokens / summary.seconds if summary.seconds else 0.0
    console.print(
        f"scored {summary.scored} checkpoints ({summary.tokens:,} tokens, {rate:,.0f} tok/s), "
        f"{summary.skipped} already done, {len(summary.failed)} failed"
    )
    if summary.failed:
        raise typer.Exit(1)


def _parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise SettingsError(f"--shard must look like I/N (e.g. 0/4), not '{text}'") from None
    return index, count


def status(warehouse: WarehouseOpt = DEFAULT_WAREHOUSE) -> None:
    """Show runs, checkpoint sweep status (done / pending / failed) and derived tables."""
    from ldw.cli.status import print_status

    print_status(warehouse, console)


def doctor(
    warehouse_arg: WarehouseArg = None,
    warehouse: WarehouseFlag = None,
    repair: Annotated[
        bool,
        typer.Option(help="Mend what can be mended: damaged results back to pending or dropped, leftovers removed."),
    ] = False,
    rebuild: Annotated[
        bool, typer.Option(help="Rebuild catalog.duckdb from the Parquet files (the old one is kept beside it).")
    ] = False,
    storage: Annotated[
        Optional[str], typer.Option(help="With --rebuild: where the Parquet tables live, when not WAREHOUSE/parquet.")
    ] = None,
    wait: WaitOpt = False,
) -> None:
    """Verify a warehouse: catalog, views, every file against its catalog row; --repair mends, --rebuild rebuilds."""
    from ldw.warehouse.lock import holders_of

    warehouse = one_warehouse(warehouse_arg, warehouse)
    wb = Workbench(warehouse, wait=wait)
    if rebuild:
        result = wb.rebuild_catalog(storage)
        kept = f"; the old catalog is {result.kept_as}" if result.kept_as else ""
        console.print(
            f"catalog rebuilt: {result.runs} runs, {result.done} checkpoints done, {result.pending} pending, "
            f"derived tables: {', '.join(result.derived) or 'none'}{kept}",
            highlight=False,
            soft_wrap=True,
        )
    if repair:
        repaired = wb.repair()
        for action in repaired.actions:
            console.print(f"[green]repaired[/green] {action}", highlight=False, soft_wrap=True)
        problems = repaired.remaining
    else:
        problems = Workbench.open(warehouse).doctor()
    for holder in holders_of(Path(warehouse)):
        err.print(f"note: {holder.describe()} is writing: files it writes now are not judged", highlight=False)
    for problem in problems:
        err.print(f"[red]problem[/red] {problem}", highlight=False)
    if problems:
        raise typer.Exit(1)
    console.print(f"{Path(warehouse).resolve()}: sound")


def demo(
    warehouse: WarehouseOpt = Path("ldw-demo"),
    quiet: QuietOpt = False,
) -> None:
    """Offline demo: train 3 tiny seeds on Python's bundled docs, sweep, and analyse them."""
    from ldw.demo import run_demo

    run_demo(warehouse, console, progress=not quiet)


def app_command(
    warehouse_arg: WarehouseArg = None,
    warehouse: WarehouseFlag = None,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to serve on.")] = 8501,
    host: Annotated[
        str, typer.Option(help="Address to bind (localhost by default; 0.0.0.0 shares it on the network).")
    ] = "127.0.0.1",
) -> None:
    """Open the Streamlit explorer on a warehouse (http://127.0.0.1:PORT)."""
    from ldw.app.launch import launch

    warehouse = one_warehouse(warehouse_arg, warehouse)
    console.print(f"serving {Path(warehouse).resolve()} at http://{host}:{port}  (Ctrl-C stops)")
    raise typer.Exit(launch(warehouse, port, host))
