"""What a plan is made of: the rows of a table, a table's plan, and the whole plan with its unique runs
(built by normae.experiments.plan; torch-free)."""

from __future__ import annotations

from dataclasses import dataclass, field

from normae.errors import ConfigError
from normae.experiments.config import Scale
from normae.spec import BenchSpec, FinetuneSpec, KnnSpec, LinprobeSpec, PretrainSpec


@dataclass
class Row:
    """One row of a table: the paper's terms, the paper's number if it prints one, and what we do for it.

    terms use reported.csv's column names. status: run (pretrain_ids and eval_ids set, one per
    seed), analysis (pretrain_ids set; the analysis stage reads those runs), measure (reason names
    the command that measures it; nothing is trained), cited, not_implemented or not_run (reason
    says why).
    """

    table: str
    terms: dict
    status: str
    paper_value: float | None = None
    metric: str | None = None
    pretrain_ids: list[str] = field(default_factory=list)
    eval_ids: list[str] = field(default_factory=list)
    reason: str | None = None


@dataclass
class TablePlan:
    name: str
    file: str
    title: str
    mapping: list[str]
    rows: list[Row]
    measure: str | None = None
    sweep: str | None = None  # the swept term, for the table's plot
    seeds: list[int] | None = None  # the table's own seeds where its scale sets them (per_table), else the plan's

    def pretrain_ids(self) -> set[str]:
        return {run_id for row in self.rows for run_id in row.pretrain_ids}

    def eval_ids(self) -> set[str]:
        return {run_id for row in self.rows for run_id in row.eval_ids}


@dataclass
class Plan:
    scale: Scale
    pretrain: dict[str, PretrainSpec]  # run id -> spec
    evaluations: dict[str, FinetuneSpec | LinprobeSpec | KnnSpec]
    tables: dict[str, TablePlan]
    seeds: list[int] = field(default_factory=lambda: [0])
    data: dict = field(default_factory=dict)  # the data map the specs' data_root came from
    measurements: dict[str, BenchSpec] = field(default_factory=dict)  # run id -> bench spec (the cost claim)

    def spec(self, run_id: str):
        """The spec of a pre-training or evaluation run; a run id the plan does not hold is a ValueError."""
        if run_id in self.pretrain:
            return self.pretrain[run_id]
        if run_id in self.evaluations:
            return self.evaluations[run_id]
        if run_id in self.measurements:
            return self.measurements[run_id]
        raise ConfigError(
            f"run {run_id} is not in the plan of scale {self.scale.name} (see `normae plan --scale {self.scale.name}`)"
        )
