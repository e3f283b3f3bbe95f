"""Random-label unlearning (RL) as a pure function: relabel forget samples and mix them into batches.

SalUn's RL baseline assigns every forget sample one random label (uniform over the classes, drawn once)
and trains with cross-entropy on the forget set joined with the retain set. Mixing ``n_f`` forget samples
into each retain batch of size ``b``, with ``n_f`` drawn so that E[n_f] = b·|F|/|R|, reproduces the
proportions of that shuffled union in expectation while the user's loader keeps serving retain data.
"""

from __future__ import annotations

import torch


def draw_random_labels(
    labels: torch.Tensor, num_classes: int, generator: torch.Generator, exclude_true: bool = False
) -> torch.Tensor:
    """One random label per sample in ``[0, num_classes)``; with ``exclude_true`` never the true one.
    ValueError when a true label lies outside ``[0, num_classes)`` (``num_classes`` is then too small)."""
    if num_classes < 2:
        raise ValueError(f"random labels need at least 2 classes, got num_classes={num_classes}")
    labels = labels.long().cpu()
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"forget labels range {int(labels.min())}..{int(labels.max())}, outside the {num_classes} classes of "
            f"num_classes={num_classes}: the random labels would cover the wrong classes; pass the model's number "
            "of classes"
        )
    if not exclude_true:
        return torch.randint(num_classes, labels.shape, generator=generator)
    # shift by 1..C-1 so the true class is never drawn, uniformly over the others
    shift = torch.randint(1, num_classes, labels.shape, generator=generator)
    return (labels + shift) % num_classes


def forget_count(batch_size: int, n_forget: int, n_retain: int, generator: torch.Generator) -> int:
    """Stochastically rounded b·|F|/|R|: how many forget samples to mix into a retain batch."""
    if n_retain < 1:
        raise ValueError("the retain set is empty: random-label unlearning needs retain data")
    expected = batch_size * n_forget / n_retain
    base = int(expected)
    return base + int(torch.rand((), generator=generator).item() < expected - base)
