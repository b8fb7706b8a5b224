"""Weighted k-nearest-neighbour classification of frozen encoder features (DINO's protocol).

The training split's features are the memory bank; each query votes with its ``k`` most similar
bank entries by cosine similarity, each weighted ``exp(similarity / temperature)``, and takes the
class with the largest sum (DINO ``eval_knn.py``: k = 20, T = 0.07). Features are taken two ways
from the encoder's output after its final norm: the cls token, and the mean of the patch tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer

from normae.errors import ConfigError, plain_worker_errors

POOLINGS = ("cls", "mean")


@torch.no_grad()
def knn_votes(
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    queries: torch.Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    chunk: int = 1024,
) -> torch.Tensor:
    """The summed vote per class of every query, shape (queries, num_classes).

    Cosine similarity (both sides L2-normalised), the ``k`` nearest bank entries (all of them if the
    bank is smaller), each voting ``exp(similarity / temperature)`` for its label, divided by the
    nearest entry's weight: ``exp((similarity - nearest) / temperature)`` is at most 1, so a small
    temperature cannot overflow (``exp(1 / 0.01)`` is inf in float32), and a query's ranking of the
    classes is DINO's. ``chunk`` queries at a time bound the similarity matrix's memory.
    """
    if bank.ndim != 2 or queries.ndim != 2 or bank.shape[1] != queries.shape[1]:
        raise ValueError(f"bank {tuple(bank.shape)} and queries {tuple(queries.shape)} must be (n, dim) alike")
    if len(bank) != len(bank_labels) or len(bank) == 0:
        raise ValueError(f"{len(bank)} bank features but {len(bank_labels)} labels (at least one of each)")
    bank = F.normalize(bank, dim=1)
    bank_labels = bank_labels.to(bank.device)
    k = min(k, len(bank))
    votes = []
    for start in range(0, len(queries), chunk):
        similarity = F.normalize(queries[start : start + chunk].to(bank), dim=1) @ bank.T
        nearest, index = similarity.topk(k, dim=1)
        weights = ((nearest - nearest[:, :1]) / temperature).exp()  # topk sorts: column 0 is the largest
        chunk_votes = torch.zeros(len(similarity), num_classes, dtype=weights.dtype, device=weights.device)
        votes.append(chunk_votes.scatter_add_(1, bank_labels[index], weights))
    return torch.cat(votes) if votes else torch.zeros(0, num_classes, dtype=bank.dtype, device=bank.device)


def knn_predict(bank, bank_labels, queries, num_classes: int, k: int = 20, temperature: float = 0.07) -> torch.Tensor:
    """The predicted class of every query: the largest vote (the lowest class among equal votes)."""
    return knn_votes(bank, bank_labels, queries, num_classes, k, temperature).argmax(dim=1)


def knn_accuracy(bank, bank_labels, queries, query_labels, num_classes: int, k: int, temperature: float) -> dict:
    """Top-1 and top-5 accuracy (%) of the weighted k-NN vote."""
    votes = knn_votes(bank, bank_labels, queries, num_classes, k, temperature)
    ranked = votes.topk(min(5, num_classes), dim=1).indices.cpu()
    hits = ranked == torch.as_tensor(query_labels).reshape(-1, 1)
    total = max(len(hits), 1)
    return {"top1": 100.0 * hits[:, 0].sum().item() / total, "top5": 100.0 * hits.any(dim=1).sum().item() / total}


@torch.no_grad()
def encode(
    model: VisionTransformer,
    dataset,
    batch_size: int,
    device: torch.device,
    amp_dtype=None,
    num_workers: int = 0,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """({pooling: float32 features (images, dim)}, labels) of a whole data set, in its order.

    ``cls``: the cls token after the encoder's final norm; ``mean``: the mean of the patch tokens
    after it (timm's ``forward_features``).
    """
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    model.eval()
    features: dict[str, list[torch.Tensor]] = {pooling: [] for pooling in POOLINGS}
    labels = []
    for images, targets in plain_worker_errors(loader):
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            tokens = model.forward_features(images.to(device)).float()
        prefix = model.num_prefix_tokens
        features["cls"].append(tokens[:, 0])
        features["mean"].append(tokens[:, prefix:].mean(dim=1))
        labels.append(torch.as_tensor(targets))
    if not labels:
        raise ConfigError("no images to encode: the data set (or its subset) is empty")
    return {pooling: torch.cat(parts) for pooling, parts in features.items()}, torch.cat(labels)
