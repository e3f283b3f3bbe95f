"""Random-number helpers that survive process boundaries and resumes.

``torch.Generator`` cannot be pickled, so a callback holding one cannot cross ``torch.multiprocessing``
(``ddp_spawn``). ``Generator`` is a CPU generator that pickles as its state. ``stream_seed`` derives the
seed of a (seed, rank, epoch) stream, so that a run resumed at an epoch boundary draws what an
uninterrupted run draws, on every rank, without carrying generator state in checkpoints.
"""

from __future__ import annotations

import numpy as np
import torch


class Generator(torch.Generator):
    """A CPU ``torch.Generator`` that pickles (and deep-copies) as its current state."""

    def __new__(cls, seed: int | None = None) -> Generator:
        return super().__new__(cls)  # torch.Generator.__new__ would read ``seed`` as a device

    def __init__(self, seed: int | None = None) -> None:
        super().__init__()
        if seed is not None:
            self.manual_seed(int(seed))

    def __reduce__(self) -> tuple:
        # plain bytes: a state tensor made here would be freed before a spawned child maps its shared memory
        return _rebuild, (self.get_state().numpy().tobytes(),)


def _rebuild(state: bytes) -> Generator:
    gen = Generator()
    gen.set_state(torch.frombuffer(bytearray(state), dtype=torch.uint8))
    return gen


def stream_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (e.g. seed, rank, epoch): nearby tuples give unrelated streams."""
    words = [int(p) % 2**64 for p in parts]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0] >> np.uint64(1))
