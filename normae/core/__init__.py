"""Core: the models and the math of the paper. ``model`` (the MAE / NoR-MAE encoder-decoder with
MAE's parameter names), ``cnp`` (closest-neighbour selection, the paper's and the authors' code's),
``losses`` (reconstruction and the NoR relation penalties) and ``classifier`` (timm's
VisionTransformer for fine-tuning and linear probing, and loading pre-trained encoders into it),
``knn`` (DINO's weighted k-NN classifier on frozen features), ``auxiliary`` (SupMAE's supervised
head and DMAE's distillation), ``teacher`` (DMAE's frozen teacher, read from a checkpoint),
``segmenter`` (UperNet on the ViT: BEiT's pyramid, segmentation-models-pytorch's decoder),
``seg_metrics`` (mIoU from one confusion matrix), ``seg_eval`` (sliding-window inference) and
``diagnostics`` (NoR-MAE's, measured during pre-training: the NoR term's gradient share, the two
branches' alignment, CNP's true-neighbour fraction).
The segmentation modules may also import segmentation_models_pytorch.

May import torch, timm, numpy and, of normae, only what ``MAY_IMPORT`` names (``spec`` for the
vocabularies); never ``data``, ``training``, ``stages`` or anything above them.

Of normae it may import exactly ``spec``, ``model_sizes``, ``paths``, ``errors`` (its ``MAY_IMPORT``, held by
tests/test_layout.py).
"""

# Checked by tests/test_layout.py: the normae modules and sub-packages this one may import.
MAY_IMPORT = ("spec", "model_sizes", "paths", "errors")
