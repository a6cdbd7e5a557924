"""TRL's SFTTrainer with two additions: our length-bucket sampler, and a tally of real vs padded tokens."""

from __future__ import annotations

from trl import SFTTrainer

from .batching import LengthBucketSampler
from .sft_data import IGNORE


class FactorySFTTrainer(SFTTrainer):
    def __init__(self, *args, bucket_lengths: list[int] | None = None, tally: dict | None = None, **kwargs):
        self.bucket_lengths = bucket_lengths  # None: keep TRL's sampler (packing brings its own order)
        self.tally = tally if tally is not None else {}
        super().__init__(*args, **kwargs)

    def _get_train_sampler(self, train_dataset=None):
        if self.bucket_lengths is None:
            return super()._get_train_sampler(train_dataset)
        # One bucket per global batch: accelerate deals its consecutive per-device slices out to the processes, so
        # N processes see together exactly the batch one process with N times the batch size would see.
        global_batch = self.args.per_device_train_batch_size * self.args.world_size
        return LengthBucketSampler(self.bucket_lengths, global_batch, self.args.seed)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        ids, mask = inputs["input_ids"], inputs.get("attention_mask")
        self.tally["tokens"] = self.tally.get("tokens", 0) + ids.numel()
        self.tally["real"] = self.tally.get("real", 0) + (int(mask.sum()) if mask is not None else ids.numel())
        self.tally["trainable"] = self.tally.get("trainable", 0) + int((inputs["labels"] != IGNORE).sum())
        return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                    num_items_in_batch=num_items_in_batch)
