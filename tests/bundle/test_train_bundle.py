"""End to end: ``python -m monai.bundle run training`` with bundle/configs/train.json on tiny volumes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from pam_monai.data.synthetic import write_synthetic_datalist
from pam_monai.networks import NETWORK_CONFIGS, Box2MaskNet, PropMaskNet, build_network_from_checkpoint, read_checkpoint

CONFIG = Path(__file__).resolve().parents[2] / "bundle" / "configs" / "train.json"
TINY = [
    "--network_config",
    "light",
    "--input_size",
    "64",
    "--num_epochs",
    "1",
    "--batch_size",
    "2",
    "--num_workers",
    "0",
]


def run_training(*args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", str(CONFIG), *TINY, *args]
    # one intra-op thread: OpenMP threads spin badly when other processes share the (two) cores
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=CONFIG.parents[2])


def check(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Two 48^3 volumes: one for training, one held out (Decathlon dataset.json)."""
    folder = tmp_path_factory.mktemp("data")
    write_synthetic_datalist(folder, 2, shape=(48, 48, 48), seed=3, num_validation=1)
    return folder


@pytest.fixture(scope="module")
def propmask_run(dataset, tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("propmask")
    log = check(
        run_training(
            "--dataset_dir", str(dataset), "--tasks_per_volume", "4", "--bundle_root", str(out / "bundle"),
            "--ckpt_dir", str(out / "ckpt"), "--export_path", str(out / "model.pt"),
        )
    )  # fmt: skip
    return out, log


def test_propmask_training_writes_checkpoints_and_export(propmask_run) -> None:
    out, log = propmask_run
    assert "val_mean_dice" in log and "tasks/s" in log
    final = out / "ckpt" / "checkpoint_final_iteration=2.pt"  # 1 training volume x 4 tasks / batch 2
    assert final.is_file() and (out / "ckpt" / "model_best.pt").is_file()
    assert isinstance(build_network_from_checkpoint(final), PropMaskNet)
    assert isinstance(build_network_from_checkpoint(out / "model.pt"), PropMaskNet)
    # The bundle's models/*.pt are plain float16 state dicts for network_def (MONAI bundle and MONAI Label load them).
    stored = torch.load(out / "model.pt", weights_only=True)
    assert all(v.dtype == torch.float16 for v in stored.values() if v.is_floating_point())
    PropMaskNet(**{**NETWORK_CONFIGS["light"], "input_size": 64}).load_state_dict(stored)
    assert not (out / "bundle").exists()  # every output went where the overrides said


def test_resume_continues_from_the_last_checkpoint(propmask_run, dataset) -> None:
    out, _ = propmask_run
    log = check(
        run_training(
            "--dataset_dir", str(dataset), "--tasks_per_volume", "4", "--num_epochs", "2",
            "--ckpt_dir", str(out / "ckpt"), "--export_path", str(out / "model_2.pt"),
        )
    )  # fmt: skip
    assert "resumed from" in log and "checkpoint_final_iteration=2.pt" in log
    assert (out / "ckpt" / "checkpoint_final_iteration=4.pt").is_file()
    assert torch.load(out / "ckpt" / "checkpoint_final_iteration=4.pt", weights_only=True)["trainer"]["iteration"] == 4


def test_fine_tuning_from_the_export_on_synthetic_volumes(propmask_run, tmp_path) -> None:
    out, _ = propmask_run
    log = check(
        run_training(
            "--use_synthetic", "true", "--synthetic_volumes", "1", "--synthetic_validation_volumes", "0",
            "--synthetic_shape", "[48,48,48]", "--synthetic_hidden_boundaries", "0.0", "--tasks_per_volume", "2",
            "--learning_rate", "0.0", "--pretrained_checkpoint", str(out / "model.pt"),
            "--ckpt_dir", str(tmp_path / "ckpt"), "--export_path", str(tmp_path / "tuned.pt"),
        )
    )  # fmt: skip
    assert "fine-tuning from" in log and "val_mean_dice" not in log  # no held-out volumes: no validation
    assert (tmp_path / "ckpt" / "checkpoint_final_iteration=1.pt").is_file()
    # lr 0 (so no decoupled weight decay either): the fine-tuned weights are the pretrained ones
    before, after = read_checkpoint(out / "model.pt"), read_checkpoint(tmp_path / "tuned.pt")
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_box2mask_training_mixed_with_synthetic(dataset, tmp_path) -> None:
    log = check(
        run_training(
            "--target", "box2mask", "--dataset_dir", str(dataset), "--use_synthetic", "true",
            "--synthetic_volumes", "1", "--synthetic_validation_volumes", "1", "--synthetic_shape", "[48,48,48]",
            "--tasks_per_volume", "2", "--ckpt_dir", str(tmp_path / "ckpt"), "--export_path", str(tmp_path / "b2m.pt"),
        )
    )  # fmt: skip
    assert "val_mean_dice" in log
    assert (tmp_path / "ckpt" / "checkpoint_final_iteration=2.pt").is_file()  # (1 real + 1 synthetic) x 2 / 2
    assert isinstance(build_network_from_checkpoint(tmp_path / "b2m.pt"), Box2MaskNet)
    light = {k: v for k, v in NETWORK_CONFIGS["light"].items() if k != "attention_stages"}
    Box2MaskNet(**{**light, "input_size": 64}).load_state_dict(torch.load(tmp_path / "b2m.pt", weights_only=True))


def test_bad_hidden_boundary_share_fails_at_start_with_one_line(tmp_path) -> None:
    result = run_training(
        "--use_synthetic", "true", "--synthetic_volumes", "1", "--synthetic_hidden_boundaries", "1.5",
        "--ckpt_dir", str(tmp_path / "ckpt"), timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "synthetic_hidden_boundaries" in last and "1.5" in last
    assert not (tmp_path / "ckpt").exists()


def test_bad_datalist_fails_at_start_with_one_line(dataset, tmp_path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "dataset.json").write_text((dataset / "dataset.json").read_text())
    for sub in ("imagesTr", "labelsTr"):
        (bad / sub).symlink_to(dataset / sub) if sub == "imagesTr" else (bad / sub).mkdir()
    source = nib.load(str(dataset / "labelsTr" / "synth_0000.nii.gz"))
    nib.save(
        nib.Nifti1Image(np.zeros(source.shape, np.uint8), source.affine), str(bad / "labelsTr" / "synth_0000.nii.gz")
    )
    result = run_training("--dataset_dir", str(bad), "--ckpt_dir", str(tmp_path / "ckpt"), timeout=120)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "synth_0000.nii.gz" in last and "empty" in last
    assert not (tmp_path / "ckpt").exists()  # nothing was trained


def test_cross_image_tasks_mix_into_propmask_training(tmp_path) -> None:
    log = check(
        run_training(
            "--use_synthetic", "true", "--synthetic_volumes", "1", "--synthetic_validation_volumes", "0",
            "--synthetic_shape", "[48,48,48]", "--tasks_per_volume", "4", "--cross_image_share", "0.25",
            "--ckpt_dir", str(tmp_path / "ckpt"), "--export_path", str(tmp_path / "model.pt"),
        )
    )  # fmt: skip
    assert "tasks/s" in log
    assert (tmp_path / "ckpt" / "checkpoint_final_iteration=2.pt").is_file()
    assert isinstance(build_network_from_checkpoint(tmp_path / "model.pt"), PropMaskNet)


@pytest.mark.parametrize(
    "args", [("--cross_image_share", "1.5"), ("--target", "box2mask", "--cross_image_share", "0.25")]
)
def test_bad_cross_image_share_fails_at_start_with_one_line(tmp_path, args) -> None:
    result = run_training(
        "--use_synthetic", "true", "--synthetic_volumes", "1", "--synthetic_validation_volumes", "0",
        "--synthetic_shape", "[32,32,32]", *args, "--ckpt_dir", str(tmp_path / "ckpt"), timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "cross_image_share" in last and args[-1] in last
    assert not (tmp_path / "ckpt").exists()
