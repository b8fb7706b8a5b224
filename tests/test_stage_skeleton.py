"""The stage skeleton (issue 21): one place decides finished / resume / afresh (``normae.stages.common.decide``),
and a process reads, parses and hashes the run folder's spec.json once (``RunFolder.check_spec``)."""

import pytest
import torch

from normae.cli import main
from normae.errors import RunFolderError
from normae.paths import RunFolder
from normae.stages.common import FINISHED, FRESH, RESUME, Stage, decide

from helpers import small_spec, write_spec

TINY = dict(epochs=1, warmup_epochs=0, train_samples=16, batch_size=8)


@pytest.fixture
def count_spec_checks(monkeypatch) -> list:
    """Every RunFolder.check_spec call of this process, by the folder it checked."""
    calls = []
    real = RunFolder.check_spec

    def counting(folder, spec):
        calls.append(folder.path)
        return real(folder, spec)

    monkeypatch.setattr(RunFolder, "check_spec", counting)
    return calls


def test_normae_pretrain_checks_the_folder_spec_once(tmp_path, count_spec_checks):
    spec_path = write_spec(tmp_path, small_spec(**TINY))
    assert main(["pretrain", "--spec", str(spec_path), "--out", str(tmp_path / "run")]) == 0
    assert count_spec_checks == [tmp_path / "run"]
    count_spec_checks.clear()  # a finished run: checked once, and nothing trained
    assert main(["pretrain", "--spec", str(spec_path), "--out", str(tmp_path / "run")]) == 0
    assert count_spec_checks == [tmp_path / "run"]


def test_normae_launch_inprocess_checks_the_folder_spec_once(tmp_path, count_spec_checks):
    spec_path = write_spec(tmp_path, small_spec(**TINY))
    assert main(["launch", "--spec", str(spec_path), "--out", str(tmp_path / "run"), "--launcher", "inprocess"]) == 0
    assert count_spec_checks == [tmp_path / "run"]


class Inputs(Stage):
    """A stage whose inputs the test sets."""

    def __init__(self, spec, **inputs):
        super().__init__(spec)
        self.given = inputs

    def inputs(self):
        return self.given


def planted(tmp_path, upstream: str | None) -> RunFolder:
    """A run folder of small_spec() with a checkpoint that recorded ``upstream`` and a metrics line."""
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    folder.write_spec(small_spec())
    torch.save({"model": {}, "loop": {}, "upstream": upstream}, folder.checkpoint_path)
    folder.metrics_path.write_text('{"kind": "epoch"}\n')
    return folder


def test_one_place_decides_finished_resume_and_afresh(tmp_path, capsys):
    folder = planted(tmp_path, "sha256:aaaa")
    same, other = Inputs(small_spec(), upstream="sha256:aaaa"), Inputs(small_spec(), upstream="sha256:bbbb")
    with pytest.raises(RunFolderError, match="checkpoint.pt exists: pass --resume"):
        decide(folder, same, resume=False)
    assert decide(folder, same, resume=True) == (RESUME, {"upstream": "sha256:aaaa"})
    assert decide(folder, Inputs(small_spec(), upstream=None), resume=True)[0] == RESUME  # nothing to compare
    assert folder.checkpoint_path.exists() and folder.metrics_path.exists()

    assert decide(folder, other, resume=True) == (FRESH, {"upstream": "sha256:bbbb"})
    log = capsys.readouterr().err
    assert "was trained from sha256:aaaa, this run starts from sha256:bbbb: starting afresh" in log
    assert not folder.checkpoint_path.exists() and not folder.metrics_path.exists()
    assert decide(folder, other, resume=True)[0] == FRESH

    folder.write_summary({"final": {"loss": 1.0}})
    assert decide(folder, other, resume=False) == (FINISHED, {})
    with pytest.raises(RunFolderError, match="holds another run"):  # the spec first, finished or not
        decide(folder, Inputs(small_spec(seed=3), upstream=None), resume=True)


def test_every_checkpoint_records_the_inputs_of_its_run(tmp_path):
    from normae.stages.pretrain import run_pretrain
    from normae.training.checkpoint import load_checkpoint

    spec = small_spec(**TINY)
    summary = run_pretrain(spec, tmp_path / "run")
    expected = {"spec": spec.digest(), "upstream": None, "teacher": None, "data": None}  # generated data: no folder
    assert load_checkpoint(tmp_path / "run" / RunFolder.CHECKPOINT)["inputs"] == expected
    assert summary["inputs"] == RunFolder(tmp_path / "run").require_summary()["inputs"] == expected
