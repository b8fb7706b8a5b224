"""Data: every dataset fact once (``registry``, torch-free), the readers of the on-disk formats
(``sources``: Fashion-MNIST's IDX files, ImageNet folders, generated images), the pre-training and
classification sets built from them with their transforms, the segmentation sets (ADE20K, the
Fashion-MNIST canvas stand-in) with their joint image-and-mask transforms, the un-augmented analysis
images, and fetching Fashion-MNIST. Loading only: checking a data folder is ``datacheck``, writing
generated data sets is ``datagen``; both read this package's facts and never its loaders.

May import torch, torchvision, PIL, numpy and, of normae, only what ``MAY_IMPORT`` names; never
``core``, ``training`` or anything above them. This ``__init__`` imports nothing, so
``normae.data.registry`` stays torch-free.

Of normae it may import exactly ``errors``, ``paths`` (its ``MAY_IMPORT``, held by tests/test_layout.py).
"""

# Checked by tests/test_layout.py: the normae modules and sub-packages this one may import.
MAY_IMPORT = ("errors", "paths")
