"""``ldw train``: the reference trainer with its stability knobs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ldw.cli.common import QuietOpt, console
from ldw.train.config import TrainConfig


def train(
    out: Annotated[Path, typer.Option(help="Run folder to write (checkpoints stepN/, train_log.jsonl, run.json).")],
    corpus: Annotated[
        str, typer.Option(help="'builtin' (Python's bundled docs) or a .txt/.jsonl/.parquet file.")
    ] = "builtin",
    seed: Annotated[int, typer.Option(help="Training seed.")] = 0,
    size: Annotated[str, typer.Option(help="Model size preset: tiny | small | 160m.")] = "tiny",
    arch: Annotated[str, typer.Option(help="gpt_neox | llama.")] = "gpt_neox",
    steps: Annotated[int, typer.Option(help="Optimizer steps.")] = TrainConfig.steps,
    save_every: Annotated[
        int, typer.Option(help="Checkpoint every K steps after the log-spaced start.")
    ] = TrainConfig.save_every,
    batch_size: Annotated[int, typer.Option(help="Sequences per step.")] = TrainConfig.batch_size,
    seq_len: Annotated[int, typer.Option(help="Tokens per sequence.")] = TrainConfig.seq_len,
    lr: Annotated[
        float, typer.Option(help="Peak learning rate (1e-2 suits tiny, about 6e-4 suits 160m).")
    ] = TrainConfig.lr,
    warmup: Annotated[int, typer.Option(help="Linear warmup steps.")] = TrainConfig.warmup_steps,
    tokenizer: Annotated[
        Optional[Path], typer.Option(help="Tokenizer folder; a BPE one is trained when omitted.")
    ] = None,
    vocab_size: Annotated[int, typer.Option(help="Vocabulary of the trained BPE tokenizer.")] = TrainConfig.vocab_size,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda (bf16 autocast on CUDA).")] = "auto",
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = TrainConfig.weight_decay,
    grad_clip: Annotated[float, typer.Option(help="Gradient-norm clipping (0 disables).")] = TrainConfig.grad_clip,
    schedule: Annotated[
        str, typer.Option(help="LR schedule: cosine | constant | wsd | multistep.")
    ] = TrainConfig.schedule,
    min_lr_ratio: Annotated[
        float, typer.Option(help="cosine/wsd end at this fraction of --lr.")
    ] = TrainConfig.min_lr_ratio,
    decay_fraction: Annotated[
        float, typer.Option(help="wsd: last fraction of steps that decays.")
    ] = TrainConfig.decay_fraction,
    decay_shape: Annotated[str, typer.Option(help="wsd decay: linear | sqrt (1-sqrt).")] = TrainConfig.decay_shape,
    lr_milestones: Annotated[
        str, typer.Option(help="multistep: fractions of steps where lr *= --lr-gamma.")
    ] = "0.8,0.9",
    lr_gamma: Annotated[float, typer.Option(help="multistep factor.")] = TrainConfig.lr_gamma,
    scaled_embed: Annotated[bool, typer.Option(help="Takase et al.: embeddings x sqrt(d).")] = False,
    embed_layernorm: Annotated[bool, typer.Option(help="Takase et al.: LayerNorm after the embedding.")] = False,
    small_init: Annotated[
        bool, typer.Option(help="Takase et al.: std sqrt(2/(5d)), output projections / sqrt(2N).")
    ] = False,
    step_bound_tau: Annotated[float, typer.Option(help="Qi et al.: sigma1(update) <= tau*sigma1(W) (0 = off).")] = 0.0,
    step_bound_iters: Annotated[
        int, typer.Option(help="Power iterations for the step bound.")
    ] = TrainConfig.step_bound_power_iters,
    qk_layernorm: Annotated[bool, typer.Option(help="Wortsman et al.: q/k norm (llama arch; saved as Qwen3).")] = False,
    z_loss: Annotated[float, typer.Option(help="Wortsman et al.: z-loss coefficient (0 = off).")] = 0.0,
    log_signals: Annotated[
        bool, typer.Option(help="Log max attention logit and output log-partition per step.")
    ] = False,
    est_stages: Annotated[
        Optional[str],
        typer.Option(help="Li et al. EST: stages 'frac:heads:mlp:layers,...' (e.g. 0.3:0.5:0.5:0.5,0.3:0.75:0.75:1)."),
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Train a small causal LM and save checkpoints on a log-spaced schedule (Pythia-style)."""
    from ldw.train.config import parse_est_stages, parse_milestones
    from ldw.train.trainer import train_run

    config = TrainConfig(
        corpus=corpus,
        seed=seed,
        size=size,
        arch=arch,
        steps=steps,
        save_every=save_every,
        batch_size=batch_size,
        seq_len=seq_len,
        lr=lr,
        warmup_steps=warmup,
        tokenizer=str(tokenizer) if tokenizer else None,
        vocab_size=vocab_size,
        device=device,
        weight_decay=weight_decay,
        grad_clip=grad_clip,
        schedule=schedule,
        min_lr_ratio=min_lr_ratio,
        decay_fraction=decay_fraction,
        decay_shape=decay_shape,
        lr_milestones=parse_milestones(lr_milestones),
        lr_gamma=lr_gamma,
        scaled_embed=scaled_embed,
        embed_layernorm=embed_layernorm,
        small_init=small_init,
        step_bound_tau=step_bound_tau,
        step_bound_power_iters=step_bound_iters,
        qk_layernorm=qk_layernorm,
        z_loss=z_loss,
        log_signals=log_signals,
        est_stages=parse_est_stages(est_stages) if est_stages else (),
    )
    path = train_run(config, out, progress=not quiet)
    console.print(f"run saved to [bold]{path}[/bold]; next: ldw ingest {path}")
