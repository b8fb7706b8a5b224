"""The plan's report, what ``normae plan`` prints: per table the runs it needs, the runs it shares and
the rows not run and why (``plan_text``), or every run as one JSON document (``plan_document``), and the
device-hour estimate from the scale's throughputs (``pretrain_hours``, ``eval_hours``). Torch-free."""

from __future__ import annotations

from pathlib import Path

from normae.data.registry import DATASETS
from normae.errors import ConfigError
from normae.experiments.config import PAPER_IMG_SIZE, Scale
from normae.experiments.plan import Plan
from normae.model_sizes import image_flops
from normae.spec import PretrainSpec


def _hours(images: int, throughput: float) -> float:
    return images / throughput / 3600


def _train_images(spec) -> int:
    """Training images per epoch: the set's train split (normae.data.registry), capped by the scale's train_samples."""
    total = DATASETS[spec.dataset].train_images
    if total is None:
        raise ConfigError(f"normae.data.registry has no train split size for {spec.dataset}: the estimate needs one")
    return min(total, spec.train_samples or total)


def _flops_factor(spec, img_size: int, reference_patch: int, mask_ratio: float | None) -> float:
    """FLOPs per image of this run over those at the reference patch (the throughput's), with the
    attention term that grows with the square of the token count (normae.model_sizes)."""
    ran = image_flops(spec.model, img_size, spec.patch_size, mask_ratio)
    return ran / image_flops(spec.model, img_size, reference_patch, mask_ratio)


def _img_size(spec) -> int:
    return spec.img_size or DATASETS[spec.dataset].img_size or PAPER_IMG_SIZE


def pretrain_hours(spec: PretrainSpec, scale: Scale) -> float:
    """epochs x images / throughput, scaled by the FLOPs per image relative to the paper's patch 16 at this scale."""
    images = _train_images(spec)
    factor = _flops_factor(spec, _img_size(spec), scale.patch_sizes[16], spec.mask_ratio)
    return _hours(spec.epochs * images, scale.throughput["pretrain"][spec.model]) * factor


def eval_hours(spec, scale: Scale) -> float:
    """As pre-training, at the fine-tuning throughput (segmentation: its own, crops per second); k-NN (no
    epochs) as one pass over its memory bank."""
    images = _train_images(spec)
    factor = _flops_factor(spec, _img_size(spec), scale.patch_sizes[16], None)
    kind = "segmentation" if spec.stage == "segment" else "finetune"
    rate = scale.throughput.get(kind, {}).get(spec.model)
    if rate is None:
        raise ConfigError(
            f"scale {scale.name}: throughput.{kind} has no entry for {spec.model}: add its images per second "
            f"(measure one run and read its summary.json) to config/scales/{scale.name}.yaml"
        )
    return _hours(getattr(spec, "epochs", 1) * images, rate) * factor


def plan_hours(plan: Plan, run_ids=None) -> float:
    """Device-hours of the plan's runs (``run_ids``: only those), each counted once."""
    hours = sum(pretrain_hours(s, plan.scale) for i, s in plan.pretrain.items() if run_ids is None or i in run_ids)
    return hours + sum(
        eval_hours(s, plan.scale) for i, s in plan.evaluations.items() if run_ids is None or i in run_ids
    )


WALL_TIME_ASSUMPTION = (
    "device-hours / GPUs: every GPU busy from start to end, each run scaling perfectly over the GPUs it gets; "
    "queueing, start-up and the evaluations' wait for their pre-training not included"
)


def check_gpus(gpus: int) -> int:
    if gpus < 1:
        raise ConfigError(f"--gpus {gpus}: give the number of GPUs, 1 or more")
    return gpus


def wall_hours(device_hours: float, gpus: int) -> float:
    """The wall time of ``device_hours`` on ``gpus`` GPUs under WALL_TIME_ASSUMPTION (a lower bound)."""
    return device_hours / check_gpus(gpus)


def plan_text(plan: Plan, whole: Plan | None = None, gpus: int | None = None) -> str:
    """The plan in words, per table: its runs, those shared with other tables of ``whole`` (the plan before
    select_tables; default ``plan``), its rows not run and its device-hours; with ``gpus``, the total's wall time
    on that many GPUs."""
    scale = plan.scale
    users: dict[str, set[str]] = {}
    for table in (whole or plan).tables.values():
        for run_id in table.pretrain_ids() | table.eval_ids():
            users.setdefault(run_id, set()).add(table.name)
    lines = [
        f"scale {scale.name}: {scale.description}",
        f"{len(plan.pretrain)} pre-training runs, {len(plan.evaluations)} evaluation runs in all",
        "",
    ]
    for table in plan.tables.values():
        lines.append(f"{table.name}: {table.title}")
        lines.append("  at this scale: " + ("; ".join(table.mapping) or "the paper's settings"))
        pretrain, evals = table.pretrain_ids(), table.eval_ids()
        shared = sorted(run_id for run_id in pretrain | evals if len(users[run_id]) > 1)
        lines.append(
            f"  {len(pretrain)} pre-training runs, {len(evals)} evaluation runs, "
            f"{len(shared)} of them shared with other tables"
        )
        counts: dict[str, int] = {}
        for row in table.rows:
            counts[row.status] = counts.get(row.status, 0) + 1
        lines.append("  rows: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
        for row in table.rows:
            if row.status in ("not_implemented", "not_run"):
                lines.append(f"    {row.status}: {_describe(row.terms)}: {row.reason}")
        hours = plan_hours(plan, pretrain | evals)
        lines.append(f"  estimate: {hours:.1f} device-hours for its runs (shared runs counted in each table)")
        lines.append("")
    total = plan_hours(plan)
    lines.append(
        f"total estimate: {total:.1f} device-hours, each run counted once; from the throughput "
        f"configured in config/scales/{scale.name}.yaml (its comment says whether it was measured), "
        "MAE's for both methods, scaled by FLOPs per image (attention quadratic in tokens); start-up time not included"
    )
    if gpus is not None:
        lines.append(f"wall time on {gpus} GPUs: {wall_hours(total, gpus):.1f} hours ({WALL_TIME_ASSUMPTION})")
    return "\n".join(lines)


def _describe(terms: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in terms.items())


def select_tables(plan: Plan, names: list[str] | None) -> Plan:
    """The plan restricted to the named tables (by name or file); an unknown name lists the known ones."""
    if not names:
        return plan
    by_name = {key: table for table in plan.tables.values() for key in (table.name, table.file)}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        known = ", ".join(f"{t.name} ({t.file})" for t in plan.tables.values())
        raise ConfigError(f"no table {', '.join(unknown)} at scale {plan.scale.name}; known: {known}")
    tables = {by_name[name].name: by_name[name] for name in names}
    needed = {run_id for table in tables.values() for run_id in table.pretrain_ids() | table.eval_ids()}
    return Plan(
        plan.scale,
        {k: v for k, v in plan.pretrain.items() if k in needed},
        {k: v for k, v in plan.evaluations.items() if k in needed},
        tables,
        plan.seeds,
        plan.data,
        {k: v for k, v in plan.measurements.items() if k in needed},
    )


def plan_document(plan: Plan) -> dict:
    """Every run of the plan: its id, stage, full spec, and the paper rows it serves (table and terms)."""
    serves: dict[str, list[dict]] = {}
    for table in plan.tables.values():
        for row in table.rows:
            for run_id in dict.fromkeys(row.pretrain_ids + row.eval_ids):
                serves.setdefault(run_id, []).append({"table": table.name, "status": row.status, "terms": row.terms})
                teacher = getattr(plan.spec(run_id), "teacher", None) or ""
                if Path(teacher).parent.name in plan.pretrain:  # a planned DMAE teacher serves its students' rows
                    entry = {"table": table.name, "status": f"teacher of {run_id}", "terms": row.terms}
                    serves.setdefault(Path(teacher).parent.name, []).append(entry)
    runs = [
        {
            "run_id": run_id,
            "stage": spec.stage,
            "spec": spec.to_dict(),
            "learning_rate": _learning_rate(spec),
            "serves": serves.get(run_id, []),
        }
        for run_id, spec in [*plan.pretrain.items(), *plan.evaluations.items(), *plan.measurements.items()]
    ]
    return {
        "scale": plan.scale.name,
        "seeds": plan.seeds,
        "data": plan.data,
        "tables": list(plan.tables),
        "runs": runs,
    }


def _learning_rate(spec) -> dict | None:
    """The learning rate a run will use: lr, or blr x global batch / 256 (per process without a global batch)."""
    if not hasattr(spec, "blr"):
        return None  # k-NN trains nothing
    if spec.lr is not None:
        return {"lr": spec.lr, "from": "lr"}
    if spec.global_batch is not None:
        return {
            "lr": spec.blr * spec.global_batch / 256,
            "from": f"blr {spec.blr:g} x global batch {spec.global_batch} / 256",
        }
    per_process = spec.batch_size * spec.accum_iter
    return {
        "lr": spec.blr * per_process / 256,
        "from": f"blr {spec.blr:g} x {per_process} / 256 per process: multiply by the number of processes",
    }
