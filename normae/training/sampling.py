"""Which samples a process trains on, in which order, and with which randomness.

Every sample's randomness (augmentation, mask noise) is seeded by (seed, epoch, index) alone, so
it does not depend on data-loading workers, the number of processes or where a run stopped: the
first rule of exact resume.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from normae.data.pretrain import epoch_order
from normae.training.runtime import seeded_randomness

# This process's sample order for one epoch: the one definition, in normae.data (the DALI loader reads it too).
epoch_indices = epoch_order


def sample_seed(seed: int, epoch: int, index: int) -> int:
    return ((seed * 1_000_003 + epoch) * 1_000_000_007 + index) % (2**63)


class SeededSamples(Dataset):
    """Items keyed by ``(epoch, index)``; each sample's randomness depends on nothing else.

    With ``noise_length`` every item also carries the uniform noise (length L) that fixes its mask.
    """

    def __init__(self, dataset: Dataset, seed: int, noise_length: int | None = None):
        self.dataset, self.seed, self.noise_length = dataset, seed, noise_length

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key
        with seeded_randomness(sample_seed(self.seed, epoch, index)):
            image, target = self.dataset[index]
            if self.noise_length is None:
                return image, target
            return image, target, torch.rand(self.noise_length)
