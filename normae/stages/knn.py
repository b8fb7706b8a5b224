"""The k-NN stage: a frozen pre-trained (or fresh) encoder -> weighted k-NN top-1 / top-5 (DINO's protocol).

One pass, nothing trained: the training split's features are the memory bank, the evaluation
split's are classified by the vote of their ``k`` nearest bank entries (``normae.core.knn``). The
encoder is loaded as for fine-tuning and linear probing (``normae.stages.transfer``), and the run
folder is taken, locked and finished the same way, with the upstream checkpoint's digest.

Both poolings are reported (``top1_cls``, ``top1_mean``); the headline ``top1`` is the mean of the
patch tokens (``HEADLINE_POOLING``): MAE gives the cls token no objective of its own, and the NoR
term acts on the patch tokens' relations, so that is where an effect of it would show.
Under DDP every rank computes the same result and rank 0 writes it.
"""

from __future__ import annotations

import time
from pathlib import Path

from normae.core.classifier import build_classifier, load_encoder
from normae.core.knn import POOLINGS, encode, knn_accuracy
from normae.data.classification import build_classification_dataset
from normae.data.registry import CLASSIFICATION_SETS
from normae.data.transforms import eval_transform
from normae.spec import KnnSpec
from normae.stages.common import (
    evaluation_facts,
    finish_run_folder,
    fixed_subset,
    open_run_folder,
    spec_withdrawn_on_early_failure,
    start_run_folder,
)
from normae.stages.transfer import encoder_source, upstream_digest
from normae.training.runtime import amp_dtype, environment_facts, resolve_amp, seed_everything, setup_distributed
from normae.training.signals import StopSignals

HEADLINE_POOLING = "mean"


def run_knn(spec: KnnSpec, run_dir: str | Path, resume: bool = False, signals: StopSignals | None = None) -> dict:
    """Evaluate ``spec.init``'s encoder by weighted k-NN into ``run_dir``; returns the summary.

    ``resume`` and ``signals`` are accepted as every stage's are: there is no checkpoint to resume
    from, a stopped run computes again from the start (it takes one pass over the data).
    """
    folder, done = open_run_folder(spec, run_dir)
    if done is not None:
        return done
    info = CLASSIFICATION_SETS[spec.dataset]
    upstream = upstream_digest(spec)  # hashed before it is loaded, as in transfer
    state, size, patch_size, pretrain_img_size = encoder_source(spec)
    img_size = spec.img_size or pretrain_img_size or info.img_size
    rank, _, device = setup_distributed()
    with start_run_folder(folder, spec, rank, device) as finished, spec_withdrawn_on_early_failure(folder, rank):
        if finished is not None:
            return finished
        started = time.time()
        seed_everything(spec.seed)
        transform = eval_transform(img_size, info.mean, info.std, crop_pct=1.0 if img_size < 64 else 0.875)
        train_set, eval_set = (
            fixed_subset(build_classification_dataset(spec.dataset, spec.data_root, split, transform, spec.download), n)
            for split, n in (("train", spec.train_samples), ("eval", spec.eval_samples))
        )
        model = build_classifier(size, img_size, patch_size, info.num_classes, global_pool="token")
        if state is not None:
            load_encoder(model, state)
        model.to(device)
        amp = resolve_amp(spec.amp, device)
        options = {"batch_size": spec.batch_size, "device": device, "amp_dtype": amp_dtype(amp)}
        bank, bank_labels = encode(model, train_set, num_workers=spec.num_workers, **options)
        queries, query_labels = encode(model, eval_set, num_workers=spec.num_workers, **options)
        scores = {
            pooling: knn_accuracy(
                bank[pooling], bank_labels, queries[pooling], query_labels, info.num_classes, spec.k, spec.temperature
            )
            for pooling in POOLINGS
        }
        headline = scores[HEADLINE_POOLING]
        per_pooling = {f"{name}_{pooling}": value for pooling, score in scores.items() for name, value in score.items()}
        return finish_run_folder(
            folder,
            rank,
            spec,
            {
                "final": {"top1": headline["top1"], "top5": headline["top5"], **per_pooling},
                "top1": headline["top1"],
                "top5": headline["top5"],
                **per_pooling,
                "headline_pooling": HEADLINE_POOLING,
                "k": spec.k,
                "temperature": spec.temperature,
                "feature_dim": int(bank[HEADLINE_POOLING].shape[1]),
                **evaluation_facts(
                    spec, upstream, (size, patch_size, img_size), info, train_set, eval_set, bank_labels.tolist()
                ),
                "amp": amp,
                **environment_facts(device),
                "wall_seconds_this_session": time.time() - started,
            },
        )
