"""Figure 3 CNP similarity statistics and the Figures 7-8 PCA, against brute-force references."""

import json

import numpy as np
import pytest
import torch

from normae.analysis.cnp_stats import cnp_cosines, summarize_cosines
from normae.analysis.pca import load_pretrained_mae
from normae.cli import main
from normae.data.analysis_images import analysis_images, pixel_stats, sklearn_sample_crops
from normae.stages import pretrain as stages

from helpers import small_spec

OFFSETS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def window(r, c, grid, wrap):
    """(row, col) of the 3x3 window's other cells; the torus with ``wrap``, else only those inside."""
    cells = []
    for dy, dx in OFFSETS:
        rr, cc = r + dy, c + dx
        if wrap:
            rr, cc = rr % grid[0], cc % grid[1]
        elif not (0 <= rr < grid[0] and 0 <= cc < grid[1]):
            continue
        if (rr, cc) != (r, c):
            cells.append((rr, cc))
    return cells


def cosine(a, b):
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return 0.0 if nb == 0 else float(a @ b / (na * nb))


def brute_cnp_cosines(images: np.ndarray, p: int, wrap: bool) -> np.ndarray:
    """Per image and patch (row-major), the highest cosine with a neighbour patch; NaN for an all-zero patch."""
    grid = (images.shape[2] // p, images.shape[3] // p)
    out = []
    for image in images:
        patches = {
            (r, c): image[:, r * p : (r + 1) * p, c * p : (c + 1) * p].reshape(-1).astype(np.float64)
            for r in range(grid[0])
            for c in range(grid[1])
        }
        for (r, c), centre in patches.items():
            if not centre.any():
                out.append(np.nan)
                continue
            out.append(max(cosine(centre, patches[cell]) for cell in window(r, c, grid, wrap)))
    return np.array(out)


@pytest.mark.parametrize("wrap", [True, False])
def test_cnp_cosines_match_brute_force(wrap):
    images = torch.rand(3, 3, 20, 16, generator=torch.Generator().manual_seed(0))
    images[0, :, 0:4, 4:8] = 0  # an all-zero patch: undefined itself, similarity 0 as a neighbour
    images[1, :, 8:12, 8:12] = images[1, :, 12:16, 8:12] * 3  # a neighbour in exactly the same direction
    ours = cnp_cosines(images, 4, wrap=wrap, batch_size=2)
    reference = brute_cnp_cosines(images.numpy(), 4, wrap)
    assert ours.shape == (3 * 5 * 4,)
    assert np.array_equal(np.isnan(ours), np.isnan(reference)) and np.isnan(ours).sum() == 1
    np.testing.assert_allclose(ours[~np.isnan(ours)], reference[~np.isnan(reference)], atol=1e-6)
    assert ours[1 * 20 + 2 * 4 + 2] == pytest.approx(1.0)


def test_image_of_identical_patches_has_cosine_one():
    tile = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(1))
    image = tile.repeat(1, 4, 4)[None]
    stats = summarize_cosines(cnp_cosines(image, 4))
    assert stats["min"] == pytest.approx(1.0) and stats["max"] == pytest.approx(1.0)
    assert stats["patches"] == 16 and stats["undefined_patches"] == 0


def test_sklearn_sample_crops_tile_the_photographs():
    crops = sklearn_sample_crops(100)
    assert crops.shape == (2 * 4 * 6, 3, 100, 100)  # two 427 x 640 photographs
    assert crops.min() >= 0.0 and crops.max() <= 1.0
    with pytest.raises(ValueError, match="holds 48 images"):
        analysis_images("sklearn_samples", 49, 100)


def test_cnp_stats_command_writes_the_measurement(tmp_path):
    out = tmp_path / "cnp" / "generated.json"
    assert (
        main(
            [
                "cnp-stats",
                "--source",
                "generated",
                "--images",
                "6",
                "--img-size",
                "16",
                "--patch-size",
                "4",
                "--pixels",
                "normalized",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    stats = json.loads(out.read_text())
    assert stats["measured"] == {
        **stats["measured"],
        "source": "generated",
        "images": 6,
        "img_size": 16,
        "patch_size": 4,
        "pixels": "normalized",
        "wrap": True,
    }
    assert stats["patches"] == 6 * 16
    assert sum(stats["histogram"]["counts"]) == stats["patches"] - stats["undefined_patches"]
    assert len(stats["histogram"]["edges"]) == len(stats["histogram"]["counts"]) + 1
    assert stats["min"] <= stats["quantiles"]["0.5"] <= stats["max"] <= 1.0 + 1e-9
    assert stats["paper"] == {"mean": 0.83, "min": 0.07, "max": 0.999}
    images = analysis_images("generated", 6, 16, split="train")
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in pixel_stats("generated"))
    assert stats["mean"] == pytest.approx(
        float(np.nanmean(brute_cnp_cosines(((images - mean) / std).numpy(), 4, True)))
    )


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory, fashion_mnist_root):
    spec = small_spec(
        dataset="fashion_mnist",
        data_root=str(fashion_mnist_root),
        img_size=None,
        epochs=1,
        warmup_epochs=0,
        batch_size=32,
    )
    run = tmp_path_factory.mktemp("runs") / "pre"
    stages.run_pretrain(spec, run)
    return run


def test_pca_pairs_each_visible_patch_with_its_closest_neighbour(pretrained_run, tmp_path):
    out = tmp_path / "pca" / "pre.npz"
    assert main(["pca", "--run", str(pretrained_run), "--images", "4", "--out", str(out)]) == 0
    data, info = np.load(out), json.loads(out.with_suffix(".json").read_text())
    kept = int(49 * 0.25)
    assert info["images"] == 4 and info["visible_per_image"] == kept
    assert data["coords"].shape == (2 * 4 * kept, 2)
    assert (data["kind"] == 0).sum() == (data["kind"] == 1).sum() == 4 * kept
    assert np.isfinite(data["coords"]).all()
    assert len(info["explained_variance_ratio"]) == 2 and 0 < sum(info["explained_variance_ratio"]) <= 1 + 1e-6
    assert -1 <= info["silhouette_visible_vs_cnp_2d"] <= 1

    model, spec = load_pretrained_mae(pretrained_run)
    images = analysis_images("fashion_mnist", 4, 28, root=spec["data_root"], split="eval")
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in pixel_stats("fashion_mnist"))
    with torch.no_grad():
        tokens = model.embed((images - mean) / std).double().numpy()
    visible, cnp = data["kind"] == 0, data["kind"] == 1
    assert np.array_equal(data["token"][visible], data["position"][visible])
    for image, position, source in zip(data["image"][cnp], data["position"][cnp], data["token"][cnp]):
        r, c = divmod(int(position), 7)
        neighbours = [rr * 7 + cc for rr, cc in window(r, c, (7, 7), wrap=True)]
        similarities = [cosine(tokens[image, position], tokens[image, j]) for j in neighbours]
        assert source in neighbours
        assert cosine(tokens[image, position], tokens[image, source]) == pytest.approx(max(similarities), abs=1e-6)
