"""The global batch: its split over processes and accumulation, the cap on a small set, the digest
and run id, the learning rate, and the refusals before a job is queued."""

import json

import pytest

from normae.cluster.launch import launch
from normae.errors import ConfigError
from normae.spec import FinetuneSpec, PretrainSpec
from normae.spec.batching import plan_batch

from helpers import small_spec


def test_the_global_batch_splits_over_processes_in_passes_of_at_most_batch_size():
    plan = plan_batch(4096, 256, 1, 8, 1_281_167)
    assert (plan.global_batch, plan.per_process, plan.micro_batch, plan.accum_iter) == (4096, 512, 256, 2)
    assert not plan.capped
    # 2048 over 6 processes does not divide: refused, naming process counts that do
    with pytest.raises(ConfigError, match="not divisible by the world size 6.*8"):
        plan_batch(2048, 256, 1, 6, 126_689)
    # a pass of at most 96 images that divides 512 per process: 64, accumulated 8 times
    assert plan_batch(4096, 96, 1, 8, 1_281_167).micro_batch == 64


def test_a_set_smaller_than_one_global_batch_caps_it_and_says_so():
    plan = plan_batch(512, 256, 1, 1, 200)  # 200 images, passes of 256 at most
    assert plan.capped and plan.requested == 512
    assert (plan.global_batch, plan.micro_batch, plan.accum_iter) == (200, 200, 1)
    plan = plan_batch(4096, 8, 1, 2, 101)  # 50 per process, passes of 8: 48 each
    assert (plan.global_batch, plan.per_process, plan.accum_iter) == (96, 48, 6)
    assert plan.facts()["capped"] is True
    with pytest.raises(ConfigError, match="cannot give each of 4 processes one image"):
        plan_batch(16, 4, 1, 4, 3)


def test_without_a_global_batch_the_split_is_as_given():
    plan = plan_batch(None, 32, 2, 4, 10_000)
    assert (plan.global_batch, plan.micro_batch, plan.accum_iter, plan.requested) == (256, 32, 2, None)


def test_the_global_batch_is_in_the_digest_and_run_id_and_the_split_is_not():
    a = PretrainSpec(global_batch=4096, batch_size=256)
    b = PretrainSpec(global_batch=4096, batch_size=128)
    c = PretrainSpec(global_batch=2048, batch_size=256)
    assert a.digest() == b.digest() != c.digest()
    assert "-b4096-" in a.run_id() and "-b2048-" in c.run_id()
    assert "-b" not in PretrainSpec().run_id().split("-ep")[1].split("-s")[0]  # no global batch: no b part
    assert "-b512-" in FinetuneSpec(global_batch=512).run_id()
    # without a global batch, the per-process batch decides what is computed
    assert PretrainSpec(batch_size=64).digest() != PretrainSpec(batch_size=32).digest()
    with pytest.raises(ConfigError, match="accum_iter 2 with global_batch 512"):
        FinetuneSpec(global_batch=512, accum_iter=2)
    with pytest.raises(ConfigError, match="global_batch must be at least 1"):
        PretrainSpec(global_batch=0)


def test_a_world_size_that_does_not_divide_the_global_batch_is_refused_before_submission(tmp_path):
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(small_spec(global_batch=20).to_json())
    with pytest.raises(ConfigError, match="not divisible by the world size 3"):
        launch(spec_path, tmp_path / "run", "local", {"tasks_per_node": 3})
    assert not (tmp_path / "run" / "job.json").exists()


def test_a_run_records_its_split_and_cap_and_its_lr_follows_the_global_batch(tmp_path):
    from normae.stages.pretrain import run_pretrain

    # 24 images cannot fill a global batch of 64: capped to 24 (3 passes of 8), lr = blr x 24 / 256
    summary = run_pretrain(
        small_spec(train_samples=24, epochs=1, global_batch=64, batch_size=8, blr=1e-3), tmp_path / "r"
    )
    assert summary["batch"] == {
        "global_batch": 24,
        "per_process": 24,
        "micro_batch": 8,
        "accum_iter": 3,
        "world_size": 1,
        "requested": 64,
        "capped": True,
    }
    assert summary["lr"] == pytest.approx(1e-3 * 24 / 256)
    assert summary["optimizer_steps"] == 1
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["batch"]["capped"] is True
