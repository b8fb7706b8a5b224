"""normae.data.segmentation: ADE20K read from a miniature tree, the Fashion-MNIST canvases, the joint transforms,
and ADE20K's check-data inspector and rehearsal copy."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from normae.data import segmentation
from normae.data.registry import (
    DATASETS,
    FOLDER_DATASETS,
    IGNORE_INDEX,
    LAYOUTS,
    REHEARSAL_MANIFEST,
    SEGMENTATION_DATASETS,
    SEGMENTATION_SETS,
    folder_key,
)
from normae.data.segmentation import (
    ADE20K,
    FashionMNISTCanvas,
    build_segmentation_dataset,
    eval_transform,
    reduce_zero_label,
    train_transform,
)
from normae.data.sources import FashionMNIST
from normae.datacheck.check import check_dataset
from normae.datagen import rehearsal
from normae.errors import CorruptDataError, DataNotFoundError
from normae.training.runtime import seeded_randomness

# (width, height) of the miniature's pictures: a landscape and a portrait one.
SIZES = {"training": [(40, 30), (30, 40)], "validation": [(36, 28)]}


def label_map(width: int, height: int, number: int) -> np.ndarray:
    """Raw labels: 0 (other) on the top rows, 1 on the left, 150 on the right, 255 in one corner."""
    labels = np.full((height, width), 1 + number, np.uint8)
    labels[: height // 4] = 0
    labels[height // 4 :, : width // 3] = 1
    labels[height // 4 :, 2 * width // 3 :] = 150
    labels[-3:, -3:] = 255
    return labels


def write_ade20k(root, sizes=SIZES, manifest=True):
    """A miniature ADEChallengeData2016 under root; the pictures are gray with the raw label as brightness."""
    base = root / "ADEChallengeData2016"
    for split, shapes in sizes.items():
        prefix = "ADE_train" if split == "training" else "ADE_val"
        for number, (width, height) in enumerate(shapes, 1):
            labels = label_map(width, height, number)
            for kind in ("images", "annotations"):
                (base / kind / split).mkdir(parents=True, exist_ok=True)
            Image.fromarray(labels).convert("RGB").save(base / "images" / split / f"{prefix}_{number:08d}.jpg")
            Image.fromarray(labels).save(base / "annotations" / split / f"{prefix}_{number:08d}.png")
    if manifest:
        counts = {"train_images": len(sizes["training"]), "eval_images": len(sizes["validation"])}
        facts = {"dataset": "ade20k", "generated_by": "tests", "num_classes": 150, **counts}
        (root / REHEARSAL_MANIFEST).write_text(json.dumps(facts))
    return root


@pytest.fixture
def ade_root(tmp_path):
    return write_ade20k(tmp_path / "ade")


def annotation(root, split="training", number=1):
    prefix = "ADE_train" if split == "training" else "ADE_val"
    return root / "ADEChallengeData2016" / "annotations" / split / f"{prefix}_{number:08d}.png"


def image_file(root, split="training", number=1):
    prefix = "ADE_train" if split == "training" else "ADE_val"
    return root / "ADEChallengeData2016" / "images" / split / f"{prefix}_{number:08d}.jpg"


# ---------------------------------------------------------------- the registry


def test_registry_facts():
    assert SEGMENTATION_DATASETS == ("ade20k", "fashion_mnist_canvas")
    ade, canvas = DATASETS["ade20k"], DATASETS["fashion_mnist_canvas"]
    assert ade.roles == {"segmentation"} and canvas.roles == {"segmentation"} and canvas.stand_in_for == "ade20k"
    assert (ade.num_classes, ade.img_size, ade.train_images, ade.eval_images) == (150, 512, 20_210, 2_000)
    assert (ade.train_split_name, ade.eval_split_name) == ("training", "validation")
    assert (canvas.num_classes, canvas.img_size, canvas.train_images, canvas.eval_images) == (11, 56, 15_000, 2_500)
    assert SEGMENTATION_SETS["ade20k"].slide_stride == 341 and SEGMENTATION_SETS["ade20k"].reduce_zero_label
    assert SEGMENTATION_SETS["fashion_mnist_canvas"].background == 0 and IGNORE_INDEX == 255
    assert FOLDER_DATASETS[-2:] == ("fashion_mnist", "ade20k")
    assert folder_key("fashion_mnist_canvas") == "fashion_mnist" and folder_key("ade20k") == "ade20k"


def test_reduce_zero_label():
    raw = torch.tensor([0, 1, 2, 150, 255], dtype=torch.uint8)
    assert reduce_zero_label(raw).tolist() == [255, 0, 1, 149, 255]
    assert reduce_zero_label(raw.long()).dtype == torch.int64


# ---------------------------------------------------------------- ADE20K


def test_ade20k_pairs_and_items(ade_root):
    train, evaluate = ADE20K(ade_root, "train"), ADE20K(ade_root / "ADEChallengeData2016", "eval")
    assert len(train) == 2 and len(evaluate) == 1
    assert [pair[0].stem for pair in train.samples] == [pair[1].stem for pair in train.samples]
    raw = label_map(40, 30, 1)
    image, mask = train[0]
    assert image.dtype == torch.float32 and image.shape == (3, 30, 40)
    assert mask.dtype == torch.int64 and mask.shape == (30, 40)
    assert (mask[raw == 0] == 255).all() and (mask[raw == 1] == 0).all() and (mask[raw == 150] == 149).all()
    assert (mask[raw == 255] == 255).all() and (mask[raw == 2] == 1).all()
    # Normalised with the ImageNet statistics: label 150's gray (JPEG: within a few levels).
    mean, std = DATASETS["ade20k"].mean[0], DATASETS["ade20k"].std[0]
    assert image[0, 20, 35].item() == pytest.approx((150 / 255 - mean) / std, abs=0.1)
    assert train[1][0].shape == (3, 40, 30)  # the portrait picture


def test_palette_annotation_reads_as_its_indices(ade_root):
    path = annotation(ade_root)
    Image.open(path).convert("P").save(path)  # mode P: the index, not the colour, is the label
    assert (
        ADE20K(ade_root, "train")[0][1].tolist() == ADE20K(write_ade20k(ade_root.parent / "b"), "train")[0][1].tolist()
    )


def test_ade20k_errors_name_the_file(ade_root, tmp_path):
    bad = label_map(40, 30, 1)
    bad[5, 5] = 200
    Image.fromarray(bad).save(annotation(ade_root))
    with pytest.raises(CorruptDataError, match=r"annotation .*ADE_train_00000001\.png holds label value\(s\) \[200\]"):
        ADE20K(ade_root, "train")[0]
    Image.fromarray(label_map(41, 30, 1)).save(annotation(ade_root))
    with pytest.raises(CorruptDataError) as error:
        ADE20K(ade_root, "train")[0]
    assert str(image_file(ade_root)) in str(error.value) and str(annotation(ade_root)) in str(error.value)
    assert "40 x 30" in str(error.value) and "41 x 30" in str(error.value)
    image_file(ade_root, number=2).write_bytes(image_file(ade_root, number=2).read_bytes()[:100])
    with pytest.raises(CorruptDataError, match=r"cannot read image .*ADE_train_00000002\.jpg"):
        ADE20K(ade_root, "train")[1]
    annotation(ade_root, "validation").unlink()
    with pytest.raises(DataNotFoundError, match=r"image .*ADE_val_00000001\.jpg has no annotation"):
        ADE20K(ade_root, "eval")


def test_missing_folder_names_it_and_the_layout(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("downloaded without download=True")

    monkeypatch.setattr(segmentation, "download_url", refuse)
    with pytest.raises(DataNotFoundError) as error:
        ADE20K(tmp_path / "nowhere", "train")
    message = str(error.value)
    assert str(tmp_path / "nowhere" / "images" / "training") in message and LAYOUTS["ade20k"] in message
    assert "data.ade20k" in message and "--download" in message and "\n" not in message

    class Downloaded(Exception):
        pass

    def fetch(url, root, filename=None, md5=None):
        raise Downloaded(url)

    monkeypatch.setattr(segmentation, "download_url", fetch)
    with pytest.raises(Downloaded, match="ADEChallengeData2016.zip"):
        ADE20K(tmp_path / "nowhere", "train", download=True)


# ---------------------------------------------------------------- the joint transforms


def coded_pair(height=384, width=512, block=32, seed=0):
    """A picture whose red channel is 10 x the label of its mask: ``block``-pixel squares of labels 0..20."""
    blocks = torch.randint(0, 21, (height // block, width // block), generator=torch.Generator().manual_seed(seed))
    labels = blocks.repeat_interleave(block, 0).repeat_interleave(block, 1).to(torch.uint8)
    image = torch.stack([labels * 10, torch.full_like(labels, 128), 255 - labels * 10])
    return tv_tensors.Image(image), tv_tensors.Mask(labels)


def decoded_labels(image, name):
    mean, std = DATASETS[name].mean[0], DATASETS[name].std[0]
    return ((image[0] * std + mean) * 255 / 10).round().long()


def interior(mask, radius=1):
    """Pixels whose neighbourhood of ``radius`` holds one label, within the picture: away from the edges (also
    those just outside a crop), which bilinear blends over about as many pixels as the rescale's factor."""
    side = 2 * radius + 1
    padded = torch.nn.functional.pad(mask[None, None].float(), (radius,) * 4, value=-1.0)
    windows = padded.unfold(2, side, 1).unfold(3, side, 1)[0, 0]
    return (windows == mask[..., None, None]).all(-1).all(-1) & (mask != IGNORE_INDEX)


def test_train_transform_keeps_image_and_mask_aligned():
    transform = train_transform("ade20k", crop=256, photometric=False)
    image, mask = coded_pair()
    draws = set()
    for seed in range(6):
        with seeded_randomness(seed):
            out_image, out_mask = transform(image, mask)
        assert out_image.shape == (3, 256, 256) and out_mask.shape == (256, 256) and out_mask.dtype == torch.int64
        assert set(out_mask.unique().tolist()) <= set(mask.unique().tolist()) | {IGNORE_INDEX}  # nearest
        keep = interior(out_mask, radius=3)  # the rescale's factor is at most 1024 / 384
        assert keep.sum() > 10_000 and torch.equal(decoded_labels(out_image, "ade20k")[keep], out_mask[keep])
        draws.add(out_mask.numpy().tobytes())
    assert len(draws) == 6  # each draw rescales, crops and flips its own way


def test_padding_is_ignored_and_the_mean_colour():
    """A crop larger than the rescaled image: padded at the bottom and right, mask IGNORE_INDEX, image 0."""
    image, mask = coded_pair()
    with seeded_randomness(0):
        out_image, out_mask = train_transform("ade20k", crop=1200, photometric=False)(image, mask)
    rows = (out_mask != IGNORE_INDEX).any(1).nonzero().max() + 1
    assert rows < 1200 and (out_mask[rows:] == IGNORE_INDEX).all() and (out_image[:, rows:] == 0).all()


def test_eval_transform_follows_mmseg_keep_ratio():
    image, mask = coded_pair(48, 64, block=8)
    out_image, out_mask = eval_transform("ade20k")(image, mask)
    assert out_image.shape == (3, 512, 683) and out_mask.shape == (512, 683)
    wide = coded_pair(8, 48, block=8)  # 8 x 48: short side to 512 would make the long side 3072 > 2048
    assert eval_transform("ade20k")(*wide)[1].shape == (341, 2048)
    assert eval_transform("ade20k", resize_masks=False)(image, mask)[1].shape == (48, 64)
    canvas_image, canvas_mask = eval_transform("fashion_mnist_canvas")(*coded_pair(56, 56, block=8))
    assert canvas_image.shape == (3, 56, 56) and torch.equal(canvas_mask, coded_pair(56, 56, block=8)[1].long())


def test_photometric_distortion_leaves_the_mask():
    image, mask = coded_pair()
    with seeded_randomness(3):
        plain = train_transform("ade20k", crop=128, photometric=False)(image, mask)
    with seeded_randomness(3):
        distorted = train_transform("ade20k", crop=128)(image, mask)
    assert torch.equal(plain[1], distorted[1]) and not torch.equal(plain[0], distorted[0])


# ---------------------------------------------------------------- the Fashion-MNIST canvases


@pytest.fixture(scope="module")
def canvases(fashion_mnist_root):
    return {split: FashionMNISTCanvas(fashion_mnist_root, split) for split in ("train", "eval")}


def test_canvas_counts_and_disjoint_items(canvases):
    for split, dataset in canvases.items():
        facts = DATASETS["fashion_mnist_canvas"]
        assert len(dataset) == (facts.train_images if split == "train" else facts.eval_images)
    evaluate = canvases["eval"]
    used = [source for index in range(len(evaluate)) for source, _, _ in evaluate.placements(index)]
    assert len(used) == len(set(used)) == 10_000


def test_canvas_rebuilt_by_hand(canvases, fashion_mnist_root):
    source = FashionMNIST(fashion_mnist_root, "test")
    dataset = canvases["eval"]
    for index in (0, 7, len(dataset) - 1):
        image = np.zeros((56, 56), np.uint8)
        label = np.zeros((56, 56), np.uint8)
        for item, top, left in dataset.placements(index):
            assert 0 <= top <= 28 and 0 <= left <= 28
            garment = source.images[item]
            for y, x in zip(*np.nonzero(garment >= 50)):
                image[top + y, left + x] = garment[y, x]
                label[top + y, left + x] = source.targets[item] + 1
        drawn_image, drawn_label = dataset.draw(index)
        assert np.array_equal(drawn_image, image) and np.array_equal(drawn_label, label)
        assert np.array_equal(drawn_label > 0, drawn_image >= 50) and not drawn_image[drawn_label == 0].any()
        assert set(np.unique(drawn_label)) <= set(range(11))
    again = FashionMNISTCanvas(fashion_mnist_root, "eval")
    assert np.array_equal(again.draw(7)[0], dataset.draw(7)[0]) and not np.array_equal(
        dataset.draw(8)[0], again.draw(7)[0]
    )


def test_canvas_items_and_registry_statistics(canvases):
    image, mask = canvases["train"][0]
    assert image.shape == (3, 56, 56) and image.dtype == torch.float32 and mask.dtype == torch.int64
    assert torch.equal(image[0], image[1]) and torch.equal(image[0], image[2])
    pixels = np.stack([canvases["train"].draw(index)[0] for index in range(2000)]) / 255
    facts = DATASETS["fashion_mnist_canvas"]
    assert pixels.mean() == pytest.approx(facts.mean[0], abs=0.01) and pixels.std() == pytest.approx(
        facts.std[0], abs=0.01
    )


def test_canvas_train_transform_is_reproducible(fashion_mnist_root):
    dataset = build_segmentation_dataset("fashion_mnist_canvas", fashion_mnist_root, "train", crop=56)
    with seeded_randomness(11):
        first = dataset[5]
    with seeded_randomness(11):
        second = dataset[5]
    draws = []
    for seed in range(4):
        with seeded_randomness(seed):
            draws.append(dataset[5])
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert len({draw[1].numpy().tobytes() for draw in draws}) > 1
    for image, mask in [first, *draws]:  # the gray level decodes to ink wherever the mask has a garment
        assert image.shape == (3, 56, 56) and mask.shape == (56, 56)
        inside = interior(mask) & (mask > 0)
        assert (image[0][inside] > (50 / 255 - 0.2029) / 0.3280 - 0.5).all()


# ---------------------------------------------------------------- check-data and the rehearsal copy


def test_check_data_passes_a_miniature_and_names_a_missing_annotation(ade_root):
    check = check_dataset("ade20k", str(ade_root))
    assert check.ok() and check.generated, check.problems
    assert "training 2, validation 1, 3 of 3 sampled image/annotation pairs decode" in check.facts
    annotation(ade_root, number=2).unlink()
    check = check_dataset("ade20k", str(ade_root))
    [problem] = check.problems
    assert "1 image(s) of" in problem and "have no annotation" in problem and "ADE_train_00000002.jpg" in problem
    assert check_dataset("fashion_mnist_canvas", None).ok()


def test_check_data_without_the_folder_or_with_bad_labels(tmp_path, ade_root):
    missing = check_dataset("ade20k", str(tmp_path / "nowhere"))
    assert "set data.ade20k in config/config.yaml" in missing.problems[0] and LAYOUTS["ade20k"] in missing.problems[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "lacks ADEChallengeData2016/" in check_dataset("ade20k", str(empty)).problems[0]
    bad = label_map(36, 28, 1)
    bad[0, 0] = 151
    Image.fromarray(bad).save(annotation(ade_root, "validation"))
    [problem] = check_dataset("ade20k", str(ade_root)).problems
    assert "ADE_val_00000001.png holds label value(s) [151]" in problem


def test_rehearsal_writes_an_ade20k_that_loads_and_checks(tmp_path):
    write = rehearsal._DOWNSTREAM["ade20k"]  # what write_rehearsal_data calls for it, into root/downstream/ade20k
    folder = write(tmp_path / "ade20k", np.random.default_rng([0, 9]), 1, 1)
    manifest = json.loads((folder / REHEARSAL_MANIFEST).read_text())
    assert (manifest["train_images"], manifest["eval_images"], manifest["num_classes"]) == (4, 2, 150)
    assert check_dataset("ade20k", str(folder)).ok()
    for split, count in (("train", 4), ("eval", 2)):
        dataset = ADE20K(folder, split)
        assert len(dataset) == count
        raw_image, raw_mask = dataset.read(0)
        assert tuple(raw_image.shape[1:]) in ((375, 500), (500, 375))
        values = set(raw_mask.unique().tolist())
        assert 255 in values and 149 in values and values <= set(range(150)) | {255}
    dataset = build_segmentation_dataset("ade20k", folder, "train", crop=64)
    with seeded_randomness(0):
        image, mask = dataset[0]
    assert image.shape == (3, 64, 64) and mask.shape == (64, 64)
