"""Data check: ``normae check-data``, whether a configured folder holds the set its loader expects, found in
seconds instead of after a day in a SLURM queue. ``check`` (``check_dataset``: the counts against the
published sizes or a rehearsal copy's manifest, a seeded sample of files decoded, one line per set),
``found`` (what the inspectors share: the copy, what was found, the fixes), ``image_sets`` (ImageNet and
the torchvision sets of image files), ``arrays`` (CIFAR's pickled batches, Fashion-MNIST's IDX files)
and ``segmentation`` (ADE20K's picture and label-map pairs).

Torch-free (standard library, numpy, PIL; scipy.io on demand): it reads what the loaders of
``data`` would read, without importing them, so that it runs on a login node. It reads each set's facts
and layout from ``data`` (the registry, the layouts, the class-folder walk the ImageNet loader shares)
and never imports the loaders themselves.

Of normae it may import exactly ``data.registry``, ``data.registry_files``, ``data.layouts``,
``data.image_folders``, ``data.pickles``, ``errors`` (its ``MAY_IMPORT``, held by tests/test_layout.py).
"""

# Checked by tests/test_layout.py: the normae modules and sub-packages this one may import.
MAY_IMPORT = (
    "data.registry",
    "data.registry_files",
    "data.layouts",
    "data.image_folders",
    "data.pickles",
    "errors",
)
