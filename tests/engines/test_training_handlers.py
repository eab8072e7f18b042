"""Training handlers: checkpoints and resuming, the wall-time budget, the throughput log."""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

import pytest
import torch
from ignite.engine import Events
from ignite.handlers import TimeLimit, time_limit
from monai.engines import SupervisedTrainer

from pam_monai.engines import TaskThroughputLogger, TrainingCheckpoint, TrainingTimeLimit, checkpoint_candidates
from pam_monai.errors import TrainingSetupError


def test_checkpoint_candidates_order(tmp_path) -> None:
    for name in ("checkpoint_iteration=10.pt", "checkpoint_final_iteration=12.pt", "model_best.pt", "x_iteration=3.pt"):
        (tmp_path / name).write_bytes(b"")
    old = time.time() - 100
    os.utime(tmp_path / "x_iteration=3.pt", (old, old))
    names = [p.name for p in checkpoint_candidates(tmp_path)]
    assert names == ["checkpoint_final_iteration=12.pt", "checkpoint_iteration=10.pt", "x_iteration=3.pt"]
    assert checkpoint_candidates(tmp_path / "absent") == []


def _tiny_trainer(max_epochs: int, make_handler) -> tuple[SupervisedTrainer, torch.nn.Module, TrainingCheckpoint]:
    torch.manual_seed(0)
    network = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    data = [{"image": torch.rand(4, 2), "label": torch.rand(4, 1)} for _ in range(3)]
    handler = make_handler({"model_state_dict": network, "optimizer_state_dict": optimizer})
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=max_epochs,
        epoch_length=3,
        train_data_loader=data,
        network=network,
        optimizer=optimizer,
        loss_function=torch.nn.MSELoss(),
        train_handlers=[handler],
        decollate=False,
    )
    return trainer, network, handler


def test_training_checkpoint_saves_and_resumes(tmp_path) -> None:
    trainer, network, _ = _tiny_trainer(1, lambda objects: TrainingCheckpoint(tmp_path, objects, save_interval=2))
    trainer.run()
    assert (tmp_path / "checkpoint_final_iteration=3.pt").is_file()
    assert (tmp_path / "checkpoint_iteration=2.pt").is_file()
    saved = torch.load(tmp_path / "checkpoint_final_iteration=3.pt", weights_only=True)
    assert set(saved) == {"model_state_dict", "optimizer_state_dict", "trainer"} and saved["trainer"]["iteration"] == 3
    weights = network.weight.detach().clone()

    # a truncated newest file (killed while writing) is skipped for the previous one
    (tmp_path / "checkpoint_iteration=9.pt").write_bytes(b"garbage")
    trainer, network, resume = _tiny_trainer(
        2, lambda objects: TrainingCheckpoint(tmp_path, objects, save_interval=0, save_final=False)
    )
    seen: list[int] = []
    trainer.add_event_handler(Events.ITERATION_STARTED, lambda engine: seen.append(engine.state.iteration))
    trainer.run()
    assert resume.restored_from is not None and resume.restored_from.name == "checkpoint_final_iteration=3.pt"
    assert seen == [4, 5, 6] and trainer.state.epoch == 2
    assert not torch.equal(network.weight, weights)

    # without resume a run starts from iteration 0
    trainer, _, off = _tiny_trainer(1, lambda objects: TrainingCheckpoint(tmp_path, objects, resume="false"))
    trainer.run()
    assert trainer.state.iteration == 3 and off.restored_from is None


@pytest.mark.parametrize("decollated", [False, True])
def test_throughput_logger_counts_tasks_not_batches(decollated: bool) -> None:
    logger = TaskThroughputLogger("guide_image")
    engine = SimpleNamespace(state=SimpleNamespace(epoch=1), logger=SimpleNamespace(info=lambda message: None))
    logger._epoch_started(engine)
    for _ in range(3):
        batch = {"guide_image": torch.zeros(8, 1, 4, 4)}
        engine.state.batch = [{"guide_image": torch.zeros(1, 4, 4)}] * 8 if decollated else batch
        logger._iteration_completed(engine)
    logger._epoch_completed(engine)
    assert logger.tasks == 24 and logger.history[0] > 0


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every reading of the time-limit clock one "second" later: the start reads 0, iteration k reads k."""
    from ignite.handlers import time_limit

    from pam_monai.engines import handlers

    readings: list[float] = []

    def now() -> float:
        readings.append(float(len(readings)))
        return readings[-1]

    clock = SimpleNamespace(time=now)
    monkeypatch.setattr(time_limit, "time", clock)  # ignite's TimeLimit reads time.time() of its module
    monkeypatch.setattr(handlers, "time", SimpleNamespace(time=now, perf_counter=time.perf_counter))
    return readings


@pytest.mark.parametrize(("budget", "expected_iterations"), [(None, 9), (0, 9), (2.5, 3), ("1.5", 2)])
def test_training_time_limit_stops_after_the_budget(tmp_path, fake_clock, budget, expected_iterations) -> None:
    limit = TrainingTimeLimit(budget)
    assert isinstance(limit, TimeLimit)  # ignite's handler, started with the trainer
    for _ in range(50):  # seconds spent between building the handler and the start (config parsing, caching)
        time_limit.time.time()
    trainer, _, _ = _tiny_trainer(3, lambda objects: TrainingCheckpoint(tmp_path, objects, save_interval=0))
    limit.attach(trainer)
    finished: list[int] = []
    trainer.add_event_handler(Events.COMPLETED, lambda engine: finished.append(engine.state.iteration))
    trainer.run()
    assert trainer.state.iteration == expected_iterations
    assert finished == [expected_iterations]  # COMPLETED handlers (final checkpoint, export) still run
    assert (tmp_path / f"checkpoint_final_iteration={expected_iterations}.pt").is_file()


@pytest.mark.parametrize("budget", ["abc", [1, 2]])
def test_training_time_limit_refuses_a_budget_that_is_not_seconds(budget) -> None:
    with pytest.raises(TrainingSetupError, match="max_training_seconds must be a number of seconds"):
        TrainingTimeLimit(budget)
