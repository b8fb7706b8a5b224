"""Weighted k-NN evaluation (DINO protocol): the vote against a brute-force reference, the features, the stage."""

import json
import math

import pytest
import torch

from normae.cli import main
from normae.core.classifier import build_classifier
from normae.core.knn import encode, knn_accuracy, knn_predict, knn_votes
from normae.errors import ConfigError, DataNotFoundError, RunFolderError
from normae.paths import RunFolder
from normae.spec import KnnSpec, load_spec
from normae.stages import ENTRY_POINTS, stage_function
from normae.stages.inputs import run_inputs
from normae.stages.knn import HEADLINE_POOLING, run_knn

from helpers import small_spec


def brute_force_predict(bank, bank_labels, queries, num_classes, k, temperature):
    """One query at a time in plain Python floats: cosine to every bank entry, the k most similar vote."""
    bank, queries = bank.tolist(), queries.tolist()

    def cosine(a, b):
        return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))

    predictions = []
    for query in queries:
        ranked = sorted(range(len(bank)), key=lambda i: -cosine(query, bank[i]))[:k]
        votes = [0.0] * num_classes
        for i in ranked:
            votes[int(bank_labels[i])] += math.exp(cosine(query, bank[i]) / temperature)
        predictions.append(max(range(num_classes), key=lambda c: (votes[c], -c)))
    return predictions


@pytest.mark.parametrize(
    "n_bank, n_query, dim, classes, k, temperature",
    [(60, 25, 8, 4, 20, 0.07), (40, 30, 5, 3, 1, 0.07), (50, 20, 16, 7, 7, 0.5), (12, 9, 4, 3, 20, 0.07)],
)
def test_vote_matches_brute_force_reference(n_bank, n_query, dim, classes, k, temperature):
    generator = torch.Generator().manual_seed(n_bank + k)
    bank = torch.randn(n_bank, dim, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, classes, (n_bank,), generator=generator)
    queries = torch.randn(n_query, dim, generator=generator, dtype=torch.float64)
    expected = brute_force_predict(bank, labels, queries, classes, min(k, n_bank), temperature)
    assert knn_predict(bank, labels, queries, classes, k, temperature).tolist() == expected
    # Chunking the queries changes nothing; float32 features give the same predictions here too.
    assert knn_votes(bank, labels, queries, classes, k, temperature, chunk=4).argmax(1).tolist() == expected
    assert knn_predict(bank.float(), labels, queries.float(), classes, k, temperature).tolist() == expected


def test_k1_on_the_training_set_itself_is_100_percent():
    generator = torch.Generator().manual_seed(0)
    bank = torch.randn(200, 32, generator=generator)
    labels = torch.randint(0, 10, (200,), generator=generator)
    assert torch.equal(knn_predict(bank, labels, bank, 10, k=1), labels)
    assert knn_accuracy(bank, labels, bank, labels, 10, k=1, temperature=0.07)["top1"] == 100.0
    # At T = 0.07 the image itself (weight e^(1/0.07)) outvotes 19 random neighbours; at T = 10 the
    # votes are nearly equal and random labels are no longer recovered.
    assert knn_accuracy(bank, labels, bank, labels, 10, k=20, temperature=0.07)["top1"] == 100.0
    assert knn_accuracy(bank, labels, bank, labels, 10, k=20, temperature=10.0)["top1"] < 50.0


def test_weights_follow_the_temperature():
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    votes = knn_votes(bank, torch.tensor([0, 1]), torch.tensor([[1.0, 1.0]]), 2, k=2, temperature=0.5)
    assert torch.allclose(votes, torch.ones(1, 2))  # equal similarities, each the nearest's weight
    # Votes are exp(similarity / T) relative to the nearest entry's: cosines 1 and 0.6 at T = 0.5.
    votes = knn_votes(bank, torch.tensor([0, 1]), torch.tensor([[0.8, 0.6]]), 2, k=2, temperature=0.5)
    assert torch.allclose(votes[0, 1] / votes[0, 0], torch.tensor(math.exp((0.6 - 0.8) / 0.5)))


@pytest.mark.parametrize("temperature", [0.01, 0.005, 0.002])
def test_small_temperature_votes_stay_finite_and_match_float64(temperature):
    """n35: exp(similarity / T) overflowed float32 for T <= about 0.011 (every vote inf, top-1 halved)."""
    generator = torch.Generator().manual_seed(3)
    centres = torch.randn(10, 32, generator=generator, dtype=torch.float64)
    labels = torch.arange(200) % 10
    bank = centres[labels] + 0.6 * torch.randn(200, 32, generator=generator, dtype=torch.float64)
    query_labels = torch.arange(100) % 10
    queries = centres[query_labels] + 0.6 * torch.randn(100, 32, generator=generator, dtype=torch.float64)
    votes = knn_votes(bank.float(), labels, queries.float(), 10, k=20, temperature=temperature)
    assert torch.isfinite(votes).all() and (votes.amax(dim=1) > 0).all()
    expected = brute_force_predict(bank, labels, queries, 10, 20, temperature)
    assert votes.argmax(dim=1).tolist() == expected
    reference = knn_accuracy(bank, labels, queries, query_labels, 10, k=20, temperature=temperature)
    assert knn_accuracy(bank.float(), labels, queries.float(), query_labels, 10, 20, temperature) == reference
    assert reference["top1"] > 50.0


def test_encode_takes_the_cls_token_and_the_mean_of_the_patch_tokens():
    torch.manual_seed(0)
    model = build_classifier("vit_micro", 16, 4, 3, global_pool="token")
    images = torch.randn(5, 3, 16, 16)
    dataset = torch.utils.data.TensorDataset(images, torch.tensor([0, 1, 2, 0, 1]))
    features, labels = encode(model, dataset, batch_size=2, device=torch.device("cpu"))
    with torch.no_grad():
        tokens = model.forward_features(images)
    assert labels.tolist() == [0, 1, 2, 0, 1]
    assert torch.allclose(features["cls"], tokens[:, 0], atol=1e-6)
    assert torch.allclose(features["mean"], tokens[:, 1:].mean(1), atol=1e-6)


def test_spec_checks_and_dispatch(tmp_path):
    assert "knn" in ENTRY_POINTS and stage_function("knn") is run_knn
    spec = KnnSpec(init="results/runs/pre-mr0.75-abc/checkpoint.pt", dataset="digits", k=10)
    assert spec.run_id().startswith("digits-knn-from-pre-mr0.75-abc-k10-s0-")
    path = tmp_path / "spec.json"
    path.write_text(spec.to_json())
    assert load_spec(path) == spec
    with pytest.raises(ConfigError, match="k must be at least 1.*temperature must be positive"):
        KnnSpec(k=0, temperature=0.0)
    with pytest.raises(ConfigError, match="dataset must be one of"):
        KnnSpec(dataset="imagenet21k")
    with pytest.raises(ConfigError, match="unknown spec keys"):
        KnnSpec.from_dict({"epochs": 3})


def knn_settings(**overrides) -> dict:
    settings = dict(dataset="generated", train_samples=32, eval_samples=40, img_size=16, batch_size=16)
    return {**settings, "model": "vit_micro", "patch_size": 4, "amp": "none", "num_workers": 0, **overrides}


def test_knn_stage_from_a_pretraining_run(pretrained, tmp_path):
    spec = KnnSpec(init=str(pretrained), **knn_settings(k=5))
    out = tmp_path / "knn"
    summary = run_knn(spec, out)
    folder = RunFolder(out)
    assert folder.read_summary() == json.loads(json.dumps(summary))
    assert folder.read_spec()["stage"] == "knn" and not folder.checkpoint_path.exists()
    assert summary["run_id"] == spec.run_id() and summary["headline_pooling"] == HEADLINE_POOLING == "mean"
    assert summary["top1"] == summary["top1_mean"] and 0 <= summary["top1_cls"] <= 100
    assert summary["top1"] <= summary["top5"] <= 100
    assert (summary["k"], summary["temperature"]) == (5, 0.07)
    assert (summary["train_images"], summary["eval_images"]) == (32, 40)
    assert summary["init"] == str(pretrained) and summary["init_digest"] == run_inputs(spec)["upstream"]
    assert summary["init_digest"].startswith("sha256:")
    assert summary["model"] == "vit_micro" and summary["feature_dim"] > 0
    # A finished folder answers with its summary; the same result on a fresh folder (one deterministic pass).
    assert run_knn(spec, out) == summary
    again = run_knn(spec, tmp_path / "again")
    assert {key: again[key] for key in ("top1_cls", "top1_mean")} == {
        key: summary[key] for key in ("top1_cls", "top1_mean")
    }


def test_knn_command_from_scratch(tmp_path, capsys):
    out = tmp_path / "scratch"
    options = [f"--{key.replace('_', '-')}={value}" for key, value in knn_settings().items()]
    assert main(["knn", "--init", "none", *options, "--out", str(out), "--threads", "1"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    summary = RunFolder(out).read_summary()
    assert printed["top1"] == summary["top1"] and summary["init_digest"] is None
    assert summary["k"] == 20 and summary["spec"]["init"] == "none"


def test_unfinished_upstream_is_refused(tmp_path):
    upstream = tmp_path / "unfinished"
    upstream.mkdir()
    (upstream / "spec.json").write_text(small_spec().to_json())
    with pytest.raises(Exception, match="unfinished run"):
        run_knn(KnnSpec(init=str(upstream), **knn_settings()), tmp_path / "out")


def test_a_folder_of_another_run_is_refused_and_a_failed_start_leaves_no_spec(tmp_path):
    other = tmp_path / "other"
    RunFolder(other).path.mkdir()
    RunFolder(other).write_spec(small_spec())
    spec = KnnSpec(init="none", **knn_settings())
    with pytest.raises(RunFolderError, match="holds another run"):
        run_knn(spec, other)
    assert load_spec(other / "spec.json") == small_spec()
    missing = KnnSpec(init="none", **knn_settings(dataset="cifar10", data_root=str(tmp_path / "nowhere")))
    with pytest.raises(DataNotFoundError):
        run_knn(missing, tmp_path / "failed")
    assert not (tmp_path / "failed" / "spec.json").exists()  # a corrected spec may use the same folder
