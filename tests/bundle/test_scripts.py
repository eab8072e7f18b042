"""The bundle's ``scripts`` package: one-line exits, the inference datalist and batches, the evaluation's split."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch
from ignite.engine import Engine
from monai.data import DataLoader, Dataset

from pam_monai.errors import DatalistError, ImageError, PromptError

BUNDLE = Path(__file__).resolve().parents[2] / "bundle"


@pytest.fixture
def bundle_scripts(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """``bundle/scripts`` as the module ``scripts`` (the bundle folder first on ``sys.path``, as ``monai.bundle run``
    has it), forgotten afterwards."""
    monkeypatch.syspath_prepend(str(BUNDLE))
    for name in [n for n in sys.modules if n == "scripts" or n.startswith("scripts.")]:
        monkeypatch.delitem(sys.modules, name)
    yield importlib.import_module("scripts")
    for name in [n for n in sys.modules if n == "scripts" or n.startswith("scripts.")]:
        del sys.modules[name]


def _engine(scripts: ModuleType, error: Exception) -> Engine:
    def step(engine: Engine, batch: int) -> None:
        raise error

    engine = Engine(step)
    scripts.errors.StopOnInputError().attach(engine)
    return engine


def test_handler_stops_the_engine_with_one_line(bundle_scripts: ModuleType) -> None:
    with pytest.raises(SystemExit, match="^error: the image contains NaN"):
        _engine(bundle_scripts, ImageError("the image contains NaN or infinite intensities.")).run([1, 2])


def test_handler_lets_bugs_through_unchanged(bundle_scripts: ModuleType) -> None:
    with pytest.raises(ZeroDivisionError, match="bug"):
        _engine(bundle_scripts, ZeroDivisionError("bug")).run([1, 2])


@pytest.mark.parametrize(
    ("raised", "one_line"),
    [
        ("raise RuntimeError('Failed to evaluate') from PromptError('slice 3\\n is blank')", True),
        ("raise RuntimeError('Failed to evaluate') from ZeroDivisionError('bug')", False),
    ],
)
def test_uncaught_input_error_is_one_line_and_a_bug_keeps_its_traceback(raised: str, one_line: bool) -> None:
    code = (
        f"import sys; sys.path.insert(0, {str(BUNDLE)!r}); import scripts; from pam_monai.errors import PromptError\n"
        f"scripts.errors.one_line_errors()\n{raised}\n"
    )
    process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert process.returncode == 1
    if one_line:
        assert process.stderr.strip() == "error: slice 3 is blank"
    else:
        assert "Traceback" in process.stderr and "ZeroDivisionError: bug" in process.stderr


def test_datalist_of_one_case_or_a_folder(bundle_scripts: ModuleType, tmp_path: Path) -> None:
    inference = bundle_scripts.inference
    assert inference.datalist("ct.nii.gz", '{"box": [1, 2, 3, 4], "slice": 5}') == [
        {"image": "ct.nii.gz", "prompt": '{"box": [1, 2, 3, 4], "slice": 5}'}
    ]
    assert inference.datalist("", "") == []
    with pytest.raises(PromptError, match="nothing to segment"):
        inference.require_cases([])
    with pytest.raises(PromptError, match="no prompt"):
        inference.require_cases([{"image": "ct.nii.gz", "prompt": ""}])
    for name in ("a.nii.gz", "a.json", "b.nii.gz", "b_prompt.nii.gz", "c.nii.gz"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(PromptError, match="no prompt file for c"):
        inference.datalist(None, None, tmp_path)
    (tmp_path / "c.mrk.json").write_text("{}")
    items = inference.datalist(None, None, tmp_path)
    assert [(Path(i["image"]).name, Path(i["prompt"]).name) for i in items] == [
        ("a.nii.gz", "a.json"), ("b.nii.gz", "b_prompt.nii.gz"), ("c.nii.gz", "c.mrk.json"),
    ]  # fmt: skip
    with pytest.raises(PromptError, match="not both"):
        inference.datalist("ct.nii.gz", "p.json", tmp_path)


def test_prepare_prompt_batch_undoes_the_collation_of_one_item(bundle_scripts: ModuleType) -> None:
    prompt_args = {
        "mask_prompt": torch.zeros(8, 8, 4),
        "axis": 2,
        "thickness_mm": 10.0,
        "box": [1, 2, 5, 6],
        "boxes": [[1, [1, 2, 5, 6]], [3, [0, 1, 4, 4]]],
        "clicks": [[2, 3, 1, 1], [4, 4, 2, -1]],
        "name": "liver",
    }
    item = {"image": torch.zeros(1, 8, 8, 4), "prompt_args": prompt_args}
    batch = next(iter(DataLoader(Dataset([item]), batch_size=1)))
    image, label, args, kwargs = bundle_scripts.inference.prepare_prompt_batch(batch, device="cpu")
    assert image.shape == (1, 1, 8, 8, 4) and label is None and args == ()
    assert kwargs["mask_prompt"].shape == (8, 8, 4)
    assert kwargs["axis"] == 2 and isinstance(kwargs["axis"], int) and kwargs["thickness_mm"] == 10.0
    assert kwargs["box"] == (1, 2, 5, 6)
    assert kwargs["boxes"] == [[1, [1, 2, 5, 6]], [3, [0, 1, 4, 4]]]
    assert kwargs["clicks"] == [[2, 3, 1, 1], [4, 4, 2, -1]] and kwargs["name"] == "liver"
    two = next(iter(DataLoader(Dataset([item, item]), batch_size=2)))
    with pytest.raises(ValueError, match="one volume at a time"):
        bundle_scripts.inference.prepare_prompt_batch(two)


def test_partition_in_one_process_keeps_everything(bundle_scripts: ModuleType) -> None:
    items = [{"image": f"{i}.nii.gz"} for i in range(3)]
    assert bundle_scripts.evaluation.partition(items) == items
    assert bundle_scripts.evaluation.is_main_process()


def test_partition_needs_a_volume_per_process(bundle_scripts: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    evaluation = bundle_scripts.evaluation
    monkeypatch.setattr(evaluation.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(evaluation.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(evaluation.dist, "get_rank", lambda: 1)
    assert evaluation.partition([{"image": str(i)} for i in range(5)]) == [{"image": "1"}, {"image": "3"}]
    with pytest.raises(DatalistError, match="1 validation volumes for 2 processes"):
        evaluation.partition([{"image": "0"}])


def test_configs_name_library_functions_only_through_scripts() -> None:
    """Config glue goes through ``scripts.*``; the package's classes may be named by their public path."""
    for name in ("inference.json", "train.json", "evaluate.json", "multi_gpu_train.json", "multi_gpu_evaluate.json"):
        text = (BUNDLE / "configs" / name).read_text()
        assert "pam_monai.engines." not in text.replace('"_target_": "pam_monai.engines.', "")
        assert "pam_monai.workflows.errors" not in text
        assert "$import scripts" in json.dumps(json.loads(text).get("run", []))


@pytest.mark.parametrize(
    ("configs", "workflow_type"),
    [(["inference.json"], "infer"), (["train.json"], "train"), (["train.json", "evaluate.json"], "train")],
)
def test_monai_property_checks_pass(
    bundle_scripts: ModuleType, configs: list[str], workflow_type: str, tmp_path: Path
) -> None:
    from monai.bundle import ConfigWorkflow

    # Training resolves its trainer, whose loader needs volumes: one small generated one.
    data = {"use_synthetic": True, "synthetic_volumes": 1, "synthetic_validation_volumes": 1, "num_workers": 0,
            "synthetic_shape": [32, 32, 24], "input_size": 64} if workflow_type == "train" else {}  # fmt: skip
    workflow = ConfigWorkflow(
        config_file=[str(BUNDLE / "configs" / name) for name in configs],
        workflow_type=workflow_type,
        logging_file=False,
        bundle_root=str(tmp_path),  # where the training handlers would write (checkpoints)
        ckpt_path=str(BUNDLE / "models" / "model.pt"),
        box2mask_ckpt_path=str(BUNDLE / "models" / "box2mask.pt"),
        **data,
    )
    workflow.initialize()
    assert workflow.check_properties() == []
    assert workflow.dataset_dir is None  # a property read through the workflow, as MONAI's tools read it


def _bundle_command(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "monai.bundle", *args], capture_output=True, text=True, timeout=600, cwd=cwd, env=env
    )


def test_ckpt_export_traces_propmask_through_its_single_input_definition(
    bundle_scripts: ModuleType, tmp_path: Path
) -> None:
    """The zoo's ``ckpt_export``, run from the bundle folder, writes PropMask as TorchScript equal to the eager net."""
    process = _bundle_command(
        "ckpt_export", "export_network_def", "--filepath", str(tmp_path / "model.ts"), "--ckpt_file",
        "models/model.pt", "--meta_file", "configs/metadata.json", "--config_file", "configs/inference.json",
        "--use_trace", "true", "--input_shape", "[1,6,128,128]", cwd=BUNDLE,
    )  # fmt: skip
    assert process.returncode == 0, process.stderr[-2000:]
    from pam_monai.networks import build_propmask

    network = build_propmask("light")
    network.load_state_dict(torch.load(BUNDLE / "models" / "model.pt", weights_only=True))
    eager = bundle_scripts.export.StackedPropMask(network=network).eval()
    traced = torch.jit.load(str(tmp_path / "model.ts"))
    x = torch.rand(2, 5, 128, 128)  # other batch and query counts than the trace's
    x[:, 1] = (x[:, 1] > 0.5).float()
    with torch.no_grad():
        expected = eager(x)
        assert expected.shape == (2 * 3, 2, 128, 128)
        torch.testing.assert_close(traced(x), expected, rtol=1e-4, atol=1e-4)


def test_verify_propmask_run_checks_the_shipped_weights_against_the_metadata(tmp_path: Path) -> None:
    process = _bundle_command(
        "run", "verify_propmask", "--config_file", str(BUNDLE / "configs" / "inference.json"),
        "--bundle_root", str(BUNDLE), cwd=tmp_path,
    )  # fmt: skip
    assert process.returncode == 0, process.stderr[-2000:]
    assert "data shape of PropMask is verified with no error" in process.stdout + process.stderr
