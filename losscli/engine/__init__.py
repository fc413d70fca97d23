"""Training and evaluation engine: device handling, one-run trainer, batched multi-run trainer."""
