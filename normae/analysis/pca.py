"""Figures 7-8: PCA of the encoder's features of visible patches and of their closest neighbours.

How the CNP features are obtained (Sec. 3.3 and Fig. 7 "with the same input"; REFERENCE-FACTS.md):
each image is embedded (patch + position embedding) and masked with the run's mask ratio, as in
pre-training. The visible tokens x^tau go through the pre-trained encoder as one sequence; the
CNP sequence x^tau_CNP -- for each visible position, the embedded token of its closest neighbour
(the paper's definition: most cosine-similar embedded token in the 3x3 window, the run's border
rule), whatever CNP mode the run trained with -- goes through the same encoder as a second,
separate sequence, exactly like NoR-MAE's second branch. Features are the encoder outputs after
its final norm, cls token dropped; both sets are L2-normalised and projected jointly to 2-D with
scikit-learn's PCA. An MAE run is analysed the same way, so MAE and NoR-MAE are comparable.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

VISIBLE, CNP = 0, 1
SILHOUETTE_POINTS = 4000


def load_pretrained_mae(run: str | Path):
    """The run's pre-trained model (any method; a DMAE student without its teacher) with its checkpoint
    weights, in eval mode, and the run's spec."""
    from normae.core.classifier import read_checkpoint
    from normae.core.model import build_mae_from_spec
    from normae.data.registry import DATASETS
    from normae.errors import ConfigError
    from normae.paths import RunFolder
    from normae.spec import SUPERVISED_METHODS, PretrainSpec

    run = Path(run)
    spec = RunFolder(run).read_spec()
    if spec.get("stage", "pretrain") != "pretrain":
        raise ConfigError(
            f"{run} is a {spec['stage']} run; the PCA needs a pre-training run (encoder and its embedding)"
        )
    state, _ = read_checkpoint(run)
    img_size = spec["img_size"] or DATASETS[spec["dataset"]].img_size
    pretrain_spec = PretrainSpec.from_dict(spec)
    supervised = pretrain_spec.method in SUPERVISED_METHODS  # its checkpoint holds SupMAE's head
    num_classes = DATASETS[pretrain_spec.dataset].num_classes if supervised else None
    model = build_mae_from_spec(pretrain_spec, img_size, num_classes=num_classes)
    model.load_state_dict(state)
    return model.eval(), spec


@torch.no_grad()
def visible_and_cnp_features(model, images: torch.Tensor, seed: int = 0) -> dict:
    """Encoder features of the visible tokens and of their CNP tokens, (N, K, D) each, with the indices used.

    ``images`` are normalised as in pre-training. Returns ``visible``, ``cnp`` (features),
    ``positions`` (N, K: the visible tokens' indices) and ``sources`` (N, K: their CNPs' indices).
    """
    from normae.core.cnp import cnp_source_index
    from normae.core.model import random_masking

    tokens = model.embed(images)
    noise = torch.rand(tokens.shape[:2], generator=torch.Generator().manual_seed(seed))
    kept, _, _, positions = random_masking(tokens, model.mask_ratio, noise)
    sources = cnp_source_index(tokens, model.grid, mode="paper", wrap=model.cnp_wrap, positions=positions)
    cnp_tokens = torch.gather(tokens, 1, sources.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
    return {
        "visible": model.encode(kept)[:, 1:],
        "cnp": model.encode(cnp_tokens)[:, 1:],
        "positions": positions,
        "sources": sources,
    }


def mean_pairwise_cosine(unit: np.ndarray) -> float:
    """Mean cosine over all pairs of distinct rows of unit vectors: (|sum|^2 - M) / (M (M - 1))."""
    m = len(unit)
    total = unit.astype(np.float64).sum(axis=0)
    return float((total @ total - m) / (m * (m - 1)))


def project(visible: np.ndarray, cnp: np.ndarray) -> tuple[np.ndarray, dict]:
    """Joint 2-D PCA of L2-normalised (M, D) visible and CNP features.

    Returns the coordinates (2M, 2), visible rows first, and the scores.
    """
    from sklearn.decomposition import PCA
    from sklearn.metrics import silhouette_score

    visible = visible / np.linalg.norm(visible, axis=1, keepdims=True)
    cnp = cnp / np.linalg.norm(cnp, axis=1, keepdims=True)
    pca = PCA(n_components=2, random_state=0)
    coords = pca.fit_transform(np.concatenate([visible, cnp]))
    kinds = np.repeat([VISIBLE, CNP], len(visible))
    sample = np.random.default_rng(0).permutation(len(coords))[:SILHOUETTE_POINTS]
    return coords, {
        "explained_variance_ratio": pca.explained_variance_ratio_.tolist(),
        "mean_cosine_visible_to_its_cnp": float((visible * cnp).sum(axis=1).mean()),
        "mean_pairwise_cosine_cnp": mean_pairwise_cosine(cnp),
        "mean_pairwise_cosine_visible": mean_pairwise_cosine(visible),
        "silhouette_visible_vs_cnp_2d": float(silhouette_score(coords[sample], kinds[sample])),
    }


SCORE_MEANINGS = {
    "explained_variance_ratio": "share of the variance of the joint, normalised features on PC1 and PC2",
    "mean_cosine_visible_to_its_cnp": (
        "mean cosine between a visible patch's feature and its own CNP's feature (full dimension)"
    ),
    "mean_pairwise_cosine_cnp": "mean cosine between the features of different CNPs: lower = CNPs told apart better",
    "mean_pairwise_cosine_visible": "the same among visible patches",
    "silhouette_visible_vs_cnp_2d": "silhouette of the visible / CNP split in the 2-D projection (1: apart, 0: mixed)",
}


def run_pca(
    run: str | Path, count: int, out: str | Path, dataset: str | None = None, data_root=None, seed: int = 0
) -> dict:
    """Write ``out`` (.npz: coordinates and labels) and the same name with .json (scores and what was measured)."""
    from normae.data.analysis_images import analysis_images, pixel_stats

    model, spec = load_pretrained_mae(run)
    dataset = dataset or spec["dataset"]
    img_size = model.patch_embed.img_size[0]
    images = analysis_images(dataset, count, img_size, root=data_root or spec["data_root"], split="eval", seed=seed)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in pixel_stats(spec["dataset"]))
    features = visible_and_cnp_features(model, (images - mean) / std, seed=seed)
    n_images, kept, dim = features["visible"].shape
    coords, scores = project(features["visible"].reshape(-1, dim).numpy(), features["cnp"].reshape(-1, dim).numpy())
    image_index = np.repeat(np.arange(n_images), kept)
    positions = features["positions"].reshape(-1).numpy()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        coords=coords.astype(np.float32),
        kind=np.repeat([VISIBLE, CNP], n_images * kept).astype(np.int8),
        image=np.tile(image_index, 2),
        position=np.tile(positions, 2),
        token=np.concatenate([positions, features["sources"].reshape(-1).numpy()]),
    )
    summary = {
        "run": Path(run).name,
        "label": f"{spec['method']} {spec['model']} p{spec['patch_size']}",
        "model": spec["model"],
        "method": spec["method"],
        "cnp_trained_with": spec["cnp"] if spec["method"] == "nor_mae" else None,
        "patch_size": spec["patch_size"],
        "img_size": img_size,
        "pretrain_dataset": spec["dataset"],
        "dataset": dataset,
        "images": n_images,
        "visible_per_image": kept,
        "mask_ratio": spec["mask_ratio"],
        "seed": seed,
        "npz": {
            "coords": "(2M, 2) PCA coordinates, visible rows first",
            "kind": "0 visible, 1 CNP",
            "image": "image number",
            "position": "the visible token's index (for both rows of a pair)",
            "token": "the token the row encodes: the visible token, or its closest neighbour",
        },
        **scores,
        "meanings": SCORE_MEANINGS,
    }
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
