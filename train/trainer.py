"""TRL's SFTTrainer with a tally of real vs padded tokens (the length-bucket order is the dataset's own order:
train/batching.py's bucket_order, with transformers' public sequential sampling)."""

from __future__ import annotations

from trl import SFTTrainer

from .sft_data import IGNORE


class FactorySFTTrainer(SFTTrainer):
    def __init__(self, *args, tally: dict | None = None, **kwargs):
        self.tally = tally if tally is not None else {}
        super().__init__(*args, **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        ids, mask = inputs["input_ids"], inputs.get("attention_mask")
        self.tally["tokens"] = self.tally.get("tokens", 0) + ids.numel()
        self.tally["real"] = self.tally.get("real", 0) + (int(mask.sum()) if mask is not None else ids.numel())
        self.tally["trainable"] = self.tally.get("trainable", 0) + int((inputs["labels"] != IGNORE).sum())
        return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                    num_items_in_batch=num_items_in_batch)
