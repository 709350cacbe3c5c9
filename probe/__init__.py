"""Model side: load checkpoints, score surprisal, read weights. Knows nothing of storage."""
