"""Training throughput (tasks per second) of PropMask and Box2Mask, "light" and "paper" configurations.

The data is built as the bundle's ``train.json`` builds it: a few synthetic volumes (96 x 96 x 64, the bundle's
default shape) cached by :func:`pam_monai.engines.volume_dataset`, random tasks drawn from them by
:class:`pam_monai.engines.TaskDataset` with the bundle's samplers (:func:`pam_monai.engines.task_transform`,
augmentation on), collated by MONAI's ``DataLoader`` (no workers) and turned into ``(inputs, targets)`` by
:func:`pam_monai.engines.prepare_batch_for`. One training step is the bundle's: forward, the deep-supervision soft
Dice loss (:func:`pam_monai.engines.deep_supervision_dice_loss`), backward, ``AdamW`` step (bundle learning
rates and weight decay).

A PropMask task is one guiding slice, its mask and 4 query slices; a Box2Mask task is one box crop. Reported:
the step alone (forward + backward + optimizer) over ``--iterations`` iterations after one warm-up (mean, and the
fastest step, which other processes on a shared machine cannot have slowed), and the whole iteration (task
sampling and collation included).

Usage::

    python benchmarks/bench_training.py --configs light paper --threads 2 --iterations 3
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from monai.data import DataLoader
from monai.transforms import Compose, EnsureTyped

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_line, markdown_table, set_threads  # noqa: E402

from pam_monai.engines import (  # noqa: E402
    TaskDataset,
    build_network,
    deep_supervision_dice_loss,
    prepare_batch_for,
    task_transform,
    volume_dataset,
)
from pam_monai.inferers.task import TaskInferer  # noqa: E402
from pam_monai.networks import NETWORK_CONFIGS  # noqa: E402
from pam_monai.transforms.tasks import LabelSliceStatsd  # noqa: E402

LEARNING_RATE = {"propmask": 5e-4, "box2mask": 1e-3}
BATCH_KEY = {"propmask": "guide_image", "box2mask": "image"}


def bench(target: str, config: str, batch_size: int, iterations: int, volumes: int) -> dict:
    torch.manual_seed(0)
    size = NETWORK_CONFIGS[config]["input_size"]
    cached = volume_dataset(
        [],
        None,
        synthetic_volumes=volumes,
        synthetic_shape=(96, 96, 64),
        synthetic_seed=1000,
        synthetic_transform=Compose([EnsureTyped(keys="image", dtype=torch.float32), LabelSliceStatsd("label")]),
        num_workers=1,
    )
    tasks = TaskDataset(cached, task_transform(target, size, augment=True), tasks_per_volume=64)
    loader = iter(DataLoader(tasks, batch_size=batch_size, shuffle=True, num_workers=0))
    network = build_network(target, config).train()
    optimizer = torch.optim.AdamW(network.parameters(), lr=LEARNING_RATE[target], weight_decay=1e-4)
    loss_function = deep_supervision_dice_loss()
    prepare = prepare_batch_for(target)
    inferer = TaskInferer()

    step_times, data_seconds, count = [], 0.0, 0
    for i in range(iterations + 1):
        start = time.perf_counter()
        batch = next(loader)
        inputs, targets = prepare(batch)
        loaded = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_function(inferer(inputs, network), targets)
        loss.backward()
        optimizer.step()
        done = time.perf_counter()
        if i > 0:  # the first iteration is the warm-up
            data_seconds += loaded - start
            step_times.append(done - loaded)
            count += int(batch[BATCH_KEY[target]].shape[0])
    return {
        "parameters": sum(p.numel() for p in network.parameters()),
        "tasks": count,
        "step_seconds": sum(step_times),
        "fastest_step": min(step_times),
        "batch": batch_size,
        "data_seconds": data_seconds,
        "loss": float(loss.detach()),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["light", "paper"], choices=["light", "paper"])
    parser.add_argument("--targets", nargs="+", default=["propmask", "box2mask"], choices=["propmask", "box2mask"])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--iterations", type=int, default=3, help="timed iterations (after one warm-up)")
    parser.add_argument("--propmask-batch", type=int, default=8, help="PropMask tasks per batch (bundle: 8)")
    parser.add_argument("--box2mask-batch", type=int, default=32, help="Box2Mask samples per batch")
    parser.add_argument("--volumes", type=int, default=4, help="synthetic volumes to draw tasks from")
    parser.add_argument("--wait-quiet", type=float, default=0.0, help="wait up to N s for other processes to idle")
    args = parser.parse_args(argv)
    threads = set_threads(args.threads, args.wait_quiet)
    rows = []
    for config in args.configs:
        for target in args.targets:
            batch = args.propmask_batch if target == "propmask" else args.box2mask_batch
            r = bench(target, config, batch, args.iterations, args.volumes)
            step_rate = r["tasks"] / r["step_seconds"]
            best_rate = r["batch"] / r["fastest_step"]
            total_rate = r["tasks"] / (r["step_seconds"] + r["data_seconds"])
            rows.append(
                [
                    target,
                    config,
                    f"{r['parameters'] / 1e6:.2f} M",
                    NETWORK_CONFIGS[config]["input_size"],
                    batch,
                    f"{r['step_seconds'] / args.iterations:.2f}",
                    f"{r['data_seconds'] / args.iterations:.3f}",
                    f"{step_rate:.2f}",
                    f"**{best_rate:.2f}**",
                    f"{total_rate:.2f}",
                ]
            )
            print(f"# {target} {config}: {step_rate:.2f} tasks/s (loss {r['loss']:.3f})", file=sys.stderr)
    print(
        f"Training throughput (random init, synthetic 96x96x64 volumes, {args.iterations} iterations after a warm-up)"
    )
    print(f"machine: {machine_line(threads)}\n")
    headers = ["network", "config", "parameters", "input", "batch", "step s/iter", "data s/iter"]
    headers += ["tasks/s (step, mean)", "tasks/s (fastest step)", "tasks/s (mean, with data)"]
    print(markdown_table(headers, rows))


if __name__ == "__main__":
    main()
