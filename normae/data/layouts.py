"""Each data set's on-disk layout, described once: the files and folders its loader reads under the folder
configured for it, how its splits are listed, and Caltech-101's per-class split.

The loaders (normae.data.classification; torchvision reads the published layouts these describe),
`normae check-data` (normae.datacheck), the rehearsal writer (normae.datagen.rehearsal) and the tests read
these descriptions rather than spelling the paths themselves, so that a checker, a writer and a loader
cannot disagree about where a file lies. Standard library only (no torch, numpy or PIL), as the registry
is, which re-exports ``LAYOUTS``.
"""

from __future__ import annotations

from dataclasses import dataclass

from normae.data.registry_files import ADE20K_FOLDER, FASHION_MNIST_FILES


@dataclass(frozen=True)
class PerClassSplit:
    """A split made per class where the set publishes none (Caltech-101): each class's images, shuffled,
    give their first ``train`` to the training split and the next at most ``eval`` to evaluation."""

    train: int
    eval: int

    def sizes(self, class_size: int) -> tuple[int, int]:
        """How many of a class of ``class_size`` images train and evaluate."""
        return min(self.train, class_size), min(self.eval, max(0, class_size - self.train))

    def members(self, split: str) -> slice:
        """The positions, in a class's shuffled images, of the ``split`` ("train" or "eval") images."""
        return slice(0, self.train) if split == "train" else slice(self.train, self.train + self.eval)


@dataclass(frozen=True)
class Layout:
    """One set's files and folders, every path relative to ``folder`` (its own folder under the configured
    one; '' where the configured folder is the set's own). A folder's name ends in ``/``.

    ``train`` and ``eval`` name what each split is read from: split-list files (Pets, DTD, Food-101,
    Aircraft), array batches (CIFAR), split folders of class folders (ImageNet, ADE20K), or the keys of
    ``split_file`` (Flowers-102's setid.mat). ``labels`` is the file of the labels or class names.
    Class-folder sets (Caltech-101) name their images ``image_name`` (numbered from 1 in each class),
    leave out the folder ``left_out`` and split each class by ``per_class``. ``text``: one line for the
    messages that say where a set was looked for (``LAYOUTS``).
    """

    folder: str
    text: str
    images: str | None = None
    labels: str | None = None
    train: tuple[str, ...] = ()
    eval: tuple[str, ...] = ()
    split_file: str | None = None
    image_name: str | None = None
    left_out: str | None = None
    per_class: PerClassSplit | None = None

    def needed(self) -> list[str]:
        """The files and folders under ``folder`` the loader cannot do without, in the order check-data names
        those missing: the images' folder, the labels, the split lists."""
        splits = [self.split_file] if self.split_file else [*self.train, *self.eval]
        return [name for name in (self.images, self.labels, *splits) if name]

    def split_files(self) -> dict[str, tuple[str, ...]]:
        """{"train": ..., "eval": ...}: what each split is read from."""
        return {"train": self.train, "eval": self.eval}


# Caltech-101 has no published split; ours follows the usual transfer protocol: 30 per class train.
CALTECH101_SPLIT = PerClassSplit(train=30, eval=50)
_CIFAR10_BATCHES = tuple(f"data_batch_{number}" for number in range(1, 6))

ON_DISK: dict[str, Layout] = {
    "imagenet1k": Layout(
        "",
        "<root>/train/<wnid>/*.JPEG and <root>/val/<wnid>/*.JPEG, one folder per class wnid, "
        "e.g. <root>/train/n01440764/n01440764_10026.JPEG (validation images sorted into their class folders)",
        train=("train/",),
        eval=("val/",),
    ),
    "cifar10": Layout(
        "cifar-10-batches-py",
        "<root>/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}",
        labels="batches.meta",
        train=_CIFAR10_BATCHES,
        eval=("test_batch",),
    ),
    "cifar100": Layout(
        "cifar-100-python", "<root>/cifar-100-python/{train,test,meta}", labels="meta", train=("train",), eval=("test",)
    ),
    "flowers102": Layout(
        "flowers-102",
        "<root>/flowers-102/{jpg/image_00001.jpg..,imagelabels.mat,setid.mat}",
        images="jpg/",
        image_name="image_{:05d}.jpg",
        labels="imagelabels.mat",
        split_file="setid.mat",
        train=("trnid", "valid"),
        eval=("tstid",),
    ),
    "pets": Layout(
        "oxford-iiit-pet",
        "<root>/oxford-iiit-pet/{images/<Breed>_<n>.jpg,annotations/{trainval,test}.txt}",
        images="images/",
        train=("annotations/trainval.txt",),
        eval=("annotations/test.txt",),
    ),
    "dtd": Layout(
        "dtd/dtd",
        "<root>/dtd/dtd/{images/<class>/<name>.jpg,labels/{train1,val1,test1}.txt}",
        images="images/",
        train=("labels/train1.txt", "labels/val1.txt"),
        eval=("labels/test1.txt",),
    ),
    "food101": Layout(
        "food-101",
        "<root>/food-101/{images/<class>/<id>.jpg,meta/{train,test}.json}",
        images="images/",
        train=("meta/train.json",),
        eval=("meta/test.json",),
    ),
    "aircraft": Layout(
        "fgvc-aircraft-2013b/data",
        "<root>/fgvc-aircraft-2013b/data/{images/<id>.jpg,variants.txt,images_variant_{trainval,test}.txt}",
        images="images/",
        labels="variants.txt",
        train=("images_variant_trainval.txt",),
        eval=("images_variant_test.txt",),
    ),
    "caltech101": Layout(
        "caltech101/101_ObjectCategories",
        "<root>/caltech101/101_ObjectCategories/<class>/image_0001.jpg.. (BACKGROUND_Google included)",
        image_name="image_{:04d}.jpg",
        left_out="BACKGROUND_Google",
        per_class=CALTECH101_SPLIT,
    ),
    "fashion_mnist": Layout(
        "",
        ", ".join(f"<folder>/{name}.gz" for name in FASHION_MNIST_FILES)
        + " (each file plain or gzipped with a .gz suffix)",
        train=FASHION_MNIST_FILES[:2],
        eval=FASHION_MNIST_FILES[2:],
    ),
    "ade20k": Layout(
        ADE20K_FOLDER,
        f"<root>/{ADE20K_FOLDER}/{{images,annotations}}/{{training,validation}}/ADE_*_*.{{jpg,png}}, "
        f"e.g. <root>/{ADE20K_FOLDER}/images/training/ADE_train_00000001.jpg beside "
        f"annotations/training/ADE_train_00000001.png (<root> may also be the {ADE20K_FOLDER} folder itself)",
        images="images/",
        labels="annotations/",
        train=("training",),
        eval=("validation",),
    ),
}

# The files and folders each set's loader reads, one line each, for the messages that say where a set
# was looked for (the loaders' errors and `normae check-data`); ImageNet-100 and the canvases are read
# from another set's folder.
LAYOUTS: dict[str, str] = {name: layout.text for name, layout in ON_DISK.items()}
LAYOUTS["imagenet100"] = (
    f"the ImageNet-1K folder ({LAYOUTS['imagenet1k']}); the 100 wnids listed in "
    "normae/resources/imagenet100_classes.txt are read from it"
)
LAYOUTS["fashion_mnist_canvas"] = f"Fashion-MNIST's folder ({LAYOUTS['fashion_mnist']}); the canvases are drawn from it"
