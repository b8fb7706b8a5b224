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

from pathlib import Path

from normae.core.classifier import build_classifier, load_encoder
from normae.core.knn import POOLINGS, encode, knn_accuracy
from normae.data.classification import build_classification_dataset
from normae.data.registry import CLASSIFICATION_SETS
from normae.spec import KnnSpec
from normae.stages.common import Run, fixed_subset, run_stage
from normae.stages.transfer import EvaluationStage, evaluation_transform
from normae.training.runtime import amp_dtype
from normae.training.signals import StopSignals

HEADLINE_POOLING = "mean"


class KnnEvaluation(EvaluationStage):
    """One pass, nothing trained: the frozen encoder's features of both splits, and the vote."""

    spec: KnnSpec

    def run(self, run: Run) -> dict:
        spec, info, img_size = self.spec, CLASSIFICATION_SETS[self.spec.dataset], self.img_size
        transform = evaluation_transform(info, img_size)
        train_set, eval_set = (
            fixed_subset(build_classification_dataset(spec.dataset, spec.data_root, split, transform, spec.download), n)
            for split, n in (("train", spec.train_samples), ("eval", spec.eval_samples))
        )
        model = build_classifier(self.size, img_size, self.patch_size, info.num_classes, global_pool="token")
        if self.state is not None:
            load_encoder(model, self.state)
        model.to(run.device)
        options = {"batch_size": spec.batch_size, "device": run.device, "amp_dtype": amp_dtype(run.amp)}
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
        return {
            "final": {"top1": headline["top1"], "top5": headline["top5"], **per_pooling},
            "top1": headline["top1"],
            "top5": headline["top5"],
            **per_pooling,
            "headline_pooling": HEADLINE_POOLING,
            "k": spec.k,
            "temperature": spec.temperature,
            "feature_dim": int(bank[HEADLINE_POOLING].shape[1]),
            **self.facts(run, info, train_set, eval_set, bank_labels.tolist()),
            "amp": run.amp,
        }


def run_knn(spec: KnnSpec, run_dir: str | Path, resume: bool = False, signals: StopSignals | None = None) -> dict:
    """Evaluate ``spec.init``'s encoder by weighted k-NN into ``run_dir``; returns the summary.

    ``resume`` and ``signals`` are accepted as every stage's are: there is no checkpoint to resume
    from, a stopped run computes again from the start (it takes one pass over the data).
    """
    return run_stage(KnnEvaluation(spec), run_dir, resume, signals)
