"""Watch what our trainer feeds the model: the benchmarks count trained and padded positions per
batch from the trainer's own `collate`, so the numbers are the trainer's, not a re-derivation."""
import contextlib

from gt_finetune.train import recipe


@contextlib.contextmanager
def watch_collate(on_batch):
    """Call `on_batch(batch, rows)` for each micro-batch `recipe.collate` builds while inside."""
    original = recipe.collate

    def collate(rows, pad_id, **kwargs):
        batch = original(rows, pad_id, **kwargs)
        on_batch(batch, rows)
        return batch

    recipe.collate = collate
    try:
        yield
    finally:
        recipe.collate = original
