"""The pre-training loop with its batches from NVIDIA DALI (``--loader dali``): ``DaliTrainer``.

The files and labels are those of the data set the stage built (``normae.data.dali_loader.dataset_files``),
read in the loop's order (``Trainer.epoch_order``); DALI decodes and crops them
(``normae.data.dali_loader.DaliLoader``); the mask noise is drawn here, per sample.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from normae.data.dali_loader import DaliLoader, dataset_files, epoch_seeds
from normae.training.loop import Trainer
from normae.training.sampling import sample_seed


def sample_noise(seed: int, epoch: int, index: int, length: int) -> torch.Tensor:
    """Sample ``index``'s mask noise in ``epoch``: from its own generator, seeded by (seed, epoch, index) alone."""
    return torch.rand(length, generator=torch.Generator().manual_seed(sample_seed(seed, epoch, index)))


def with_noise(
    batches, indices: Sequence[int], seed: int, epoch: int, length: int | None, pin: bool = False
) -> Iterator[list[torch.Tensor]]:
    """``[images, labels, noise]`` for each (images, labels) batch of the samples ``indices``, in order.

    Each row of noise is its sample's (``sample_noise``), whatever batch the sample lands in; pinned
    with ``pin`` (for the copy to a CUDA device). ``length`` None: ``[images, labels]``.
    """
    start = 0
    for images, labels in batches:
        chosen = indices[start : start + len(labels)]
        start += len(labels)
        if length is None:
            yield [images, labels]
            continue
        noise = torch.stack([sample_noise(seed, epoch, index, length) for index in chosen])
        yield [images, labels, noise.pin_memory() if pin else noise]


@dataclass
class DaliEpoch:
    """One epoch's batches for the loop; ``iter()`` builds the DALI pipeline, so its threads start inside
    ``StopSignals.started``'s window (the stop signals blocked in them, as in DataLoader workers)."""

    loader: DaliLoader
    indices: list[int]
    epoch: int
    seed: int
    length: int | None  # of the mask noise (None: none)
    pin: bool

    def __iter__(self) -> Iterator[list[torch.Tensor]]:
        batches = self.loader.batches(self.indices, epoch_seeds(self.seed, self.epoch))
        return with_noise(batches, self.indices, self.seed, self.epoch, self.length, self.pin)


class DaliTrainer(Trainer):
    """The pre-training ``Trainer`` with DALI decoding and cropping the images (ImageNet folders).

    Takes ``Trainer``'s arguments and ``img_size``, ``data_name`` (the data set whose mean and std
    normalise) and ``num_threads`` (DALI's CPU threads). The images and labels come on the GPU when the
    trainer's device is CUDA (nvJPEG on that device), on the CPU otherwise (DALI's CPU operators).

    What a resumed run repeats (see ``normae.data.dali_loader``):

    - the files and their order: exact everywhere, the loop's own (``Trainer.epoch_order``);
    - the mask noise: exact everywhere, each sample's drawn from (seed, epoch, index) alone (``sample_noise``;
      not the torchvision path's numbers, which come after its crop's draws in one seeded stream);
    - the crops and flips: exact for a run resumed at an epoch boundary (from the checkpoint every epoch
      ends with, or one a signal wrote at an epoch's last step), since each epoch's pipeline is built afresh
      with seeds from (seed, epoch) (``epoch_seeds``), given the same per-process batch size, number of
      processes, decoding device and DALI version. A run resumed inside an epoch builds that epoch's
      pipeline over the remaining files only, so its crops and flips differ from the uninterrupted run's
      for the rest of that epoch (the same images in the same order, other crops); from the next epoch on
      they are the same again.
    """

    def __init__(self, *args, img_size: int, data_name: str, num_threads: int = 4, **kwargs):
        super().__init__(*args, **kwargs)
        paths, labels = dataset_files(self.samples.dataset)
        cuda = self.device.type == "cuda"
        device_id = (
            (self.device.index if self.device.index is not None else torch.cuda.current_device()) if cuda else None
        )
        self.dali = DaliLoader(
            paths,
            labels,
            img_size,
            self.cfg.batch_size,
            device="gpu" if cuda else "cpu",
            device_id=device_id,
            num_threads=num_threads,
            dataset=data_name,
        )

    def loader(self, epoch: int) -> DaliEpoch:
        pin = self.device.type == "cuda"
        return DaliEpoch(self.dali, self.epoch_order(epoch), epoch, self.cfg.seed, self.samples.noise_length, pin)
