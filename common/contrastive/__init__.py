"""The contrastive objective both the search and pre-training train with, one concept per module: the memory-bank NCE
loss (loss), the three views per image (views), a backbone with the two projection heads (net) and the one trainer
(trainer: batches, bank fill, step, epoch, NaN policy, autocast and its gradient scaler, checkpoint state)."""
