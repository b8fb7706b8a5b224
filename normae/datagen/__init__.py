"""Data generation: data sets written to disk where the published ones are not at hand. ``rehearsal``
(miniature copies of ImageNet-1K, the eight downstream sets and ADE20K in their real on-disk formats,
with a manifest that ``normae check-data`` reads, for a dress rehearsal of the paper-scale pipeline
through the real loaders) and ``imagenet_like`` (an ImageNet-like JPEG folder, pictures that decode
at a photograph's cost, for timing the data loaders).

Torch-free (standard library, numpy, PIL; scipy.io on demand): the data are written on any machine,
and read back only by the loaders of ``data``, which this package never imports.

Of normae it may import exactly ``data.registry``, ``data.layouts``, ``errors`` (its ``MAY_IMPORT``,
held by tests/test_layout.py).
"""

# Checked by tests/test_layout.py: the normae modules and sub-packages this one may import.
MAY_IMPORT = ("data.registry", "data.layouts", "errors")
