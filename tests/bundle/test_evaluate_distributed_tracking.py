"""The bundle's evaluation section, torchrun with gloo on 2 CPU processes, and MLflow tracking on a sqlite store."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pam_monai.data.synthetic import write_synthetic_datalist
from pam_monai.networks import NETWORK_CONFIGS, PropMaskNet, build_box2mask, build_propmask

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ROOT / "bundle" / "configs" / "train.json"
CONFIGS = f"['{TRAIN}','{ROOT / 'bundle' / 'configs'}/{{}}']"
TINY = ["--input_size", "64", "--batch_size", "2", "--num_workers", "0", "--tasks_per_volume", "4"]
ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


def _check(process: subprocess.CompletedProcess) -> str:
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    return process.stdout + process.stderr


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    write_synthetic_datalist(folder, 3, shape=(48, 48, 40), seed=11, num_validation=1)
    return folder


def test_torchrun_gloo_two_processes_trains_and_exports_for_single_process_inference(
    dataset: Path, tmp_path: Path
) -> None:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "monai.bundle", "run", "training", "--config_file", CONFIGS.format("multi_gpu_train.json"),
        "--bundle_root", str(tmp_path / "bundle"), "--dataset_dir", str(dataset), "--num_epochs", "2", *TINY,
        "--ckpt_dir", str(tmp_path / "ckpt"), "--export_path", str(tmp_path / "model.pt"),
    ]  # fmt: skip
    log = _check(subprocess.run(command, capture_output=True, text=True, timeout=400, env=ENV, cwd=ROOT))
    # 2 training volumes x 4 tasks, split over 2 ranks, batch 2: 2 iterations per epoch, logged by rank 0 only.
    assert log.count("Epoch: 1/2, Iter: 1/2") == 1
    assert (tmp_path / "ckpt" / "checkpoint_final_iteration=4.pt").is_file()
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in state)
    network = PropMaskNet(**{**NETWORK_CONFIGS["light"], "input_size": 64})
    network.load_state_dict(state)


def test_mlflow_tracking_on_sqlite_records_params_loss_metrics_and_config(dataset: Path, tmp_path: Path) -> None:
    mlflow = pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    command = [
        sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", str(TRAIN),
        "--bundle_root", str(tmp_path / "bundle"), "--dataset_dir", str(dataset), "--num_epochs", "1", *TINY,
        "--ckpt_dir", str(tmp_path / "ckpt"), "--export_path", str(tmp_path / "model.pt"),
        "--tracking", "mlflow", "--tracking_uri", uri, "--experiment_name", "pam_test",
    ]  # fmt: skip
    _check(subprocess.run(command, capture_output=True, text=True, timeout=300, env=ENV, cwd=tmp_path))
    client = mlflow.tracking.MlflowClient(uri)
    run = client.search_runs([client.get_experiment_by_name("pam_test").experiment_id])[0]
    assert {"train_loss", "val_mean_dice"} <= set(run.data.metrics)
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 4  # 2 volumes x 4 tasks / batch 2
    assert {"max_epochs", "epoch_length"} <= set(run.data.params)
    # The executed config is written under output_dir (<bundle_root>/eval) and logged to the run as an artifact.
    assert list((tmp_path / "bundle" / "eval").glob("config_*.json"))
    assert [a.path for a in client.list_artifacts(run.info.run_id) if a.path.startswith("config_")]


def test_evaluation_section_scores_every_object(dataset: Path, tmp_path: Path) -> None:
    torch.save(build_propmask("light", input_size=64).state_dict(), tmp_path / "model.pt")
    torch.save(build_box2mask("light", input_size=64).state_dict(), tmp_path / "box2mask.pt")
    command = [
        sys.executable, "-m", "monai.bundle", "run", "evaluating", "--config_file", CONFIGS.format("evaluate.json"),
        "--bundle_root", str(tmp_path / "bundle"), "--dataset_dir", str(dataset), "--input_size", "64",
        "--num_workers", "0", "--eval_ckpt_path", str(tmp_path / "model.pt"),
        "--eval_box2mask_ckpt_path", str(tmp_path / "box2mask.pt"), "--eval_output_dir", str(tmp_path / "eval"),
        "--eval_axes", "[0,2]", "--eval_deviations", "[0.0,0.1]", "--eval_baseline", "true",
    ]  # fmt: skip
    log = _check(subprocess.run(command, capture_output=True, text=True, timeout=600, env=ENV, cwd=ROOT))
    dataset_json = json.loads((dataset / "dataset.json").read_text())
    from monai.transforms import LoadImage

    labels = LoadImage(image_only=True)(str(dataset / dataset_json["validation"][0]["label"]))
    objects = len(set(torch.unique(labels.as_tensor()).tolist()) - {0})
    with open(tmp_path / "eval" / "per_object.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == objects * 2 * 2 * 2  # objects x axes x variants x deviations
    expected = {"dsc", "sensitivity", "precision", "specificity", "hd95", "asd", "nsd", "box_ratio", "convex_ratio",
                "iri", "baseline_dsc", "seconds", "name", "variant", "axis"}  # fmt: skip
    assert expected <= set(rows[0])
    assert all(0.0 <= float(r["dsc"]) <= 1.0 and 0.0 <= float(r["baseline_dsc"]) <= 1.0 for r in rows)
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["objects"] == len(rows)
    assert "| variant | axis |" in log  # the summary table is printed


def test_multi_gpu_evaluate_splits_the_datalist_over_two_gloo_processes_and_gathers_one_table(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    write_synthetic_datalist(data, 3, shape=(40, 40, 32), seed=21, num_validation=3)
    torch.save(build_propmask("light", input_size=64).state_dict(), tmp_path / "model.pt")
    torch.save(build_box2mask("light", input_size=64).state_dict(), tmp_path / "box2mask.pt")
    common = [
        "--bundle_root", str(tmp_path / "bundle"), "--dataset_dir", str(data), "--input_size", "64",
        "--num_workers", "0", "--eval_ckpt_path", str(tmp_path / "model.pt"),
        "--eval_box2mask_ckpt_path", str(tmp_path / "box2mask.pt"), "--eval_variants", "['mask']",
    ]  # fmt: skip
    two = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "monai.bundle",
        "run", "evaluating", "--config_file", f"['{TRAIN}','{ROOT}/bundle/configs/evaluate.json',"
        f"'{ROOT}/bundle/configs/multi_gpu_evaluate.json']", *common, "--eval_output_dir", str(tmp_path / "two"),
    ]  # fmt: skip
    log = _check(subprocess.run(two, capture_output=True, text=True, timeout=600, env=ENV, cwd=ROOT))
    assert log.count("| variant | axis |") == 1  # rank 0 prints the summary
    one = [
        sys.executable, "-m", "monai.bundle", "run", "evaluating", "--config_file", CONFIGS.format("evaluate.json"),
        *common, "--eval_output_dir", str(tmp_path / "one"),
    ]  # fmt: skip
    _check(subprocess.run(one, capture_output=True, text=True, timeout=600, env=ENV, cwd=ROOT))
    tables = {}
    for name in ("one", "two"):
        with open(tmp_path / name / "per_object.csv", newline="") as handle:
            tables[name] = [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]
    volumes = [row["volume"] for row in tables["one"]]
    assert len(set(volumes)) == 3 and volumes == sorted(volumes, key=volumes.index)
    assert tables["two"] == tables["one"]  # every object once, in the datalist's order, with the same scores
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["objects"] == len(tables["one"])
