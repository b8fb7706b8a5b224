"""A table's header line "At this scale": what the scale changed of the paper's settings, in words
(image size, models, data sets, patch sizes, epochs, the lambda factors, fine-tuning length), or for a
measurement table what was measured. No torch import."""

from __future__ import annotations

from normae.data.registry import DATASETS
from normae.experiments.config import PAPER_FINETUNE_EPOCHS, PAPER_IMG_SIZE, PAPER_SEGMENTATION_EPOCHS, Scale
from normae.experiments.faithful import lam_factor_key


def measure_mapping(measure: str, scale: Scale) -> list[str]:
    """What a measurement table measured at this scale (its rows keep the paper's terms)."""
    if measure == "cost":
        cost = scale.analysis["cost"]
        return [
            f"normae bench {cost['model']} at {cost['img_size']} px, patch {cost['patch_size']}, "
            f"batch {cost['batch_size']}, {cost['steps']} steps per method"
        ]
    return [
        f"{source}: {settings['images']} images at {settings['img_size']} px, patch {settings['patch_size']}"
        + (f", {settings['pixels']} pixels" if "pixels" in settings else "")
        for source, settings in scale.analysis["cnp_similarity"].items()
    ]


def scale_mapping(rows: list, scale: Scale) -> list[str]:
    """'paper -> this scale' for every setting the table's rows use that the scale changes."""
    lines = []
    img = scale.pretrain.get("img_size", PAPER_IMG_SIZE)
    if img != PAPER_IMG_SIZE:
        lines.append(f"image size {PAPER_IMG_SIZE} px -> {img} px")
    for kind, terms in (
        ("models", ("model",)),
        ("datasets", ("pretrain_dataset", "eval_dataset")),
        ("patch_sizes", ("patch_size",)),
        ("pretrain_epochs", ("pretrain_epochs",)),
    ):
        used = {row.terms[t] for row in rows for t in terms if t in row.terms and row.status != "cited"}
        changed = [
            f"{value} -> {'not run' if mapped is None else mapped}"
            for value, mapped in getattr(scale, kind).items()
            if value in used and mapped != value
        ]
        if changed:
            lines.append(f"{kind.replace('_', ' ')} " + ", ".join(changed))
    factors = {
        lam_factor_key(
            scale.lam_scale or {},
            row.terms["model"],
            row.terms["patch_size"],
            row.terms.get("cnp"),
            row.terms.get("nor_variant"),
            row.terms.get("mask_ratio"),
        )
        for row in rows
        if row.terms.get("method") == "nor_mae" and row.pretrain_ids
    }
    if scale.lam_scale and factors:
        lines.append(
            "lambda x "
            + ", ".join(f"{scale.lam_scale[key]:g} for {key}" for key in sorted(factors))
            + " (the paper's lambdas, rescaled so that the NoR term's share of the gradient stays the paper "
            "geometry's: docs/workflow.md, 'Faithful miniatures')"
        )
    finetuned = any(row.eval_ids and row.terms.get("eval") == "finetune" for row in rows)
    if finetuned and scale.finetune.get("epochs") != PAPER_FINETUNE_EPOCHS:
        lines.append(f"fine-tuning epochs {PAPER_FINETUNE_EPOCHS} -> {scale.finetune.get('epochs')}")
    segmented = {row.terms["eval_dataset"] for row in rows if row.eval_ids and row.terms.get("eval") == "segmentation"}
    for paper_set in sorted(segmented):
        ours = scale.datasets[paper_set]
        if ours != paper_set:
            crop = scale.segmentation.get("img_size") or DATASETS[ours].img_size
            lines.append(
                f"segmentation on {ours} ({DATASETS[ours].num_classes} classes, {crop} px crops, "
                f"{scale.segmentation.get('epochs', PAPER_SEGMENTATION_EPOCHS)} epochs) for {paper_set} "
                f"({DATASETS[paper_set].num_classes} classes, {DATASETS[paper_set].img_size} px crops, "
                f"{PAPER_SEGMENTATION_EPOCHS} epochs)"
            )
    return lines
