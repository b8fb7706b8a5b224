"""What every stage's spec shares: the field helper, serialisation, hashing and validation, and the
global batch's place in the digest and run id (torch-free; ``normae.spec`` defines the stages' specs)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import field
from pathlib import Path

from normae.data.registry import DATASETS
from normae.errors import ConfigError
from normae.spec.batching import split_problem
from normae.spec.checks import at_least, seed_problems, type_problems

BATCH_SIZE_HELP = "images per process per forward pass (with global_batch: the most; the split follows the world size)"
ACCUM_HELP = "gradient accumulation steps, without global_batch (effective batch = batch_size x accum_iter x processes)"
GLOBAL_BATCH_HELP = (
    "images per optimiser step over all processes (the paper's batch); each process then takes "
    "global_batch / processes in passes of at most batch_size, accumulated; a set smaller than one "
    "global batch caps it (recorded in summary.json)"
)


# stage -> its spec class, filled as normae.spec defines them
SPEC_CLASSES: dict[str, type[SpecBase]] = {}


def option(default, help: str, **metadata):
    """A spec field with the help text that ``normae pretrain --help`` shows."""
    return field(default=default, metadata={"help": help, **metadata})


class SpecBase:
    """Serialisation, hashing and validation shared by every stage's spec."""

    stage = "base"

    def run_id(self) -> str:
        raise NotImplementedError

    def __init_subclass__(cls, **kwargs):
        """A class that names its own ``stage`` is that stage's spec class (``SPEC_CLASSES``)."""
        super().__init_subclass__(**kwargs)
        if "stage" in cls.__dict__:
            SPEC_CLASSES[cls.stage] = cls

    # How a result is reached, not what it is (torch.compile matches eager within float rounding).
    cosmetic_fields = frozenset({"num_workers", "checkpoint_minutes", "log_every", "data_root", "download", "compile"})

    def __post_init__(self):
        # types first: the value checks compare numbers; every stage's seed (a field of each) in range
        problems = type_problems(self) or [*seed_problems(getattr(self, "seed", None)), *self.problems()]
        if problems:
            raise ConfigError(f"invalid {self.stage} spec: " + "; ".join(problems))

    def problems(self) -> list[str]:
        return []

    def pass_minimum(self) -> tuple[int, str]:
        """(the fewest images one forward pass may hold on a process, what in the model needs them).
        Models with BatchNorm over the pass need 2 (``normae.spec.batching``); the others 1."""
        return 1, "the model"

    def inert_fields(self) -> set[str]:
        """Fields that cannot change this spec's result (an unset global batch; another method's options).

        Left out of the digest, so a spec that does not use a field added later keeps its digest and run id.
        """
        return {"global_batch"} if getattr(self, "global_batch", None) is None else set()

    @staticmethod
    def parse(data: dict) -> SpecBase:
        """The spec ``data`` describes, of whichever stage its ``stage`` field names."""
        return spec_from_dict(data)

    def digest(self) -> str:
        """Hash of the fields that change what is computed (not logging, workers or paths to data).

        With a ``global_batch`` the per-process ``batch_size`` and ``accum_iter`` only say how the
        hardware reaches it (normae.spec.batching): they are left out, and the global batch is in.
        """
        split_only = {"batch_size", "accum_iter"} if getattr(self, "global_batch", None) is not None else set()
        left_out = self.cosmetic_fields | split_only | self.inert_fields()
        payload = {k: v for k, v in self.to_dict().items() if k not in left_out}
        return hashlib.sha256(json.dumps({"stage": self.stage, **payload}, sort_keys=True).encode()).hexdigest()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)  # type: ignore[call-overload]  # every subclass is a dataclass

    @classmethod
    def from_dict(cls, data: dict):
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]  # every subclass is a dataclass
        unknown = sorted(set(data) - known - {"stage"})
        if unknown:
            raise ConfigError(f"unknown spec keys {unknown}; known keys: {sorted(known)}")
        if data.get("stage", cls.stage) != cls.stage:
            raise ConfigError(f"this is a {data['stage']} spec, not a {cls.stage} spec")
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_json(cls, path: str | Path):
        spec = load_spec(path)
        if not isinstance(spec, cls):
            raise ConfigError(f"{path} is a {spec.stage} spec, not a {cls.stage} spec")
        return spec

    def to_json(self) -> str:
        return json.dumps({"stage": self.stage, **self.to_dict()}, indent=2, sort_keys=True) + "\n"


def default_image_size(dataset: str) -> int:
    """The input size of ``dataset`` where a spec leaves ``img_size`` unset (every set a stage trains or
    evaluates on has one in the registry)."""
    size = DATASETS[dataset].img_size
    assert size is not None, f"the registry gives {dataset} no input size"
    return size


def batch_part(spec) -> list[str]:
    """``b<global batch>`` for a run id where the spec fixes its global batch (nothing otherwise)."""
    return [f"b{spec.global_batch}"] if spec.global_batch is not None else []


def batch_problems(spec) -> list[str]:
    """The global batch's own checks, and a split that fails even on one process (a forward pass below the
    spec's ``pass_minimum()``); the launcher checks the split again at the job's world size."""
    problems = at_least(spec, 1, "global_batch")
    if spec.global_batch is not None and spec.accum_iter != 1:
        problems.append(
            f"accum_iter {spec.accum_iter} with global_batch {spec.global_batch}: accumulation follows from "
            "global_batch, the world size and batch_size; leave accum_iter at 1"
        )
    if not problems and spec.batch_size >= 1 and spec.accum_iter >= 1:  # at_least names the others
        split = split_problem(spec, world_size=1)
        problems += [split] if split else []
    return problems


def spec_from_dict(data: dict) -> SpecBase:
    """The spec that ``data`` describes, of the class its ``stage`` field names (pretrain if absent)."""
    if not isinstance(data, dict):
        raise ConfigError(f"a spec is a JSON object, got {type(data).__name__}")
    stage = data.get("stage", "pretrain")
    if stage not in SPEC_CLASSES:
        raise ConfigError(f"unknown stage {stage!r} in spec; known: {', '.join(SPEC_CLASSES)}")
    return SPEC_CLASSES[stage].from_dict(data)


def load_spec(path: str | Path) -> SpecBase:
    """Read a spec file (spec.json), dispatching on its ``stage`` field; every problem names the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"spec file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"cannot read spec file {path}: {error}") from None
    try:
        return spec_from_dict(data)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    except TypeError as error:  # a field of the wrong type that __post_init__'s checks trip over
        raise ConfigError(f"{path}: {error}") from None
