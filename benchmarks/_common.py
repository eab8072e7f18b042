"""Shared pieces of the benchmarks: the generated object, oracle wrappers, FLOP and memory meters, machine info.

Not part of the package: the scripts in this folder import it as a sibling module.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

SPACING = (0.8, 0.8, 1.0)
"""Voxel spacing (mm) of the generated volumes: CT-like in-plane, 1 mm slices (PAM's 20 mm = 20 slices a side)."""

OBJECT_VALUE = 100
"""Intensity of the generated object (the background is N(0, 5)); int16 like a CT in HU."""


# -------------------------------------------------------------------------------------------------------------
# the generated object
# -------------------------------------------------------------------------------------------------------------


def tube_volume(
    span: int, margin: int = 40, size: int = 512, radius: float = 36.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, int]:
    """A bright winding tube spanning ``span`` slices in a ``size x size x (span + margin)`` volume.

    The tube's centre drifts along a slow helix (at most ~1.3 px per slice) and its radius varies by +-25 % (at
    most ~0.6 px per slice), so consecutive cross-sections overlap as in real anatomy; its ends are flat, so it
    covers exactly ``span`` slices, centred along the axis.

    Returns:
        ``(image int16 (X, Y, Z), truth bool (X, Y, Z), middle slice index)``.
    """
    depth = span + margin
    first = margin // 2
    rng = np.random.default_rng(seed)
    image = rng.normal(0.0, 5.0, (size, size, depth)).round().astype(np.int16)
    truth = np.zeros((size, size, depth), dtype=bool)
    rows, cols = np.ogrid[:size, :size]
    for k in range(first, first + span):
        t = (k - first) / 100.0 * 2 * np.pi
        cr = size / 2 + 20 * np.cos(t) + 30
        cc = size / 2 + 20 * np.sin(t) - 25
        r = radius * (1 + 0.25 * np.sin(0.7 * t))
        truth[:, :, k] = (rows - cr) ** 2 + (cols - cc) ** 2 <= r**2
    image[truth] = OBJECT_VALUE
    return image, truth, first + span // 2


def affine(spacing: Sequence[float] = SPACING) -> np.ndarray:
    return np.diag([*spacing, 1.0])


def bounding_box(mask: np.ndarray) -> tuple[tuple[int, int], ...]:
    """Inclusive ``(first, last)`` per axis of the nonzero voxels."""
    out = []
    for axis in range(mask.ndim):
        covered = np.nonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))[0]
        out.append((int(covered[0]), int(covered[-1])))
    return tuple(out)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = float(a.sum() + b.sum())
    return 2.0 * float((a & b).sum()) / total if total else 1.0


# -------------------------------------------------------------------------------------------------------------
# oracle wrappers: the real network's cost, the truth's masks
# -------------------------------------------------------------------------------------------------------------


def _oracle_heads(images: torch.Tensor, shapes: Sequence[torch.Size]) -> list[torch.Tensor]:
    """Logits saying "object" where the normalised input is bright (the object normalises to about 0, the
    background to -1), at the resolutions of the real network's heads."""
    fg = (images > -0.5).to(torch.float32) * 20 - 10
    full = torch.cat((-fg, fg), dim=1)
    heads = []
    for shape in shapes:
        step = max(1, full.shape[-1] // shape[-1])
        heads.append(full[..., ::step, ::step].contiguous())
    return heads


class OraclePropMask(nn.Module):
    """Runs the real PropMask forward (its time and FLOPs are paid) and returns the true masks of the queries.

    Random weights would stop propagation at a random slice or run to the volume edge; the oracle makes the number
    of rounds and slices predicted those of a network that segments the object correctly.
    """

    def __init__(self, network: nn.Module, meter: FlopMeter | None = None) -> None:
        super().__init__()
        self.network = network
        self.input_size = network.input_size
        self.meter = meter

    def forward_indexed(
        self, guides: torch.Tensor, masks: torch.Tensor, queries: torch.Tensor, index: torch.Tensor
    ) -> list[torch.Tensor]:
        real = self.network.forward_indexed(guides, masks, queries, index)
        self._count(guides.shape[0], queries.shape[0], queries.shape[-1])
        return _oracle_heads(queries, [h.shape for h in real])

    # Under PropagationInferer(compile=True) this forward_indexed is what torch.compile traces: the FLOP counting
    # (Python bookkeeping, a FlopCounterMode on first use) runs eagerly between the compiled parts.
    @torch.compiler.disable
    def _count(self, guides: int, queries: int, size: int) -> None:
        if self.meter is not None:
            self.meter.add_propmask(self.network, int(guides), int(queries), int(size))


class OracleBox2Mask(nn.Module):
    """Runs the real Box2Mask forward and returns the bright part of its input as the mask."""

    def __init__(self, network: nn.Module, meter: FlopMeter | None = None) -> None:
        super().__init__()
        self.network = network
        self.input_size = network.input_size
        self.encoder = network.encoder  # the inferer reads the downsampling factor from it
        self.meter = meter

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        real = self.network(x)
        if self.meter is not None:
            self.meter.add_box2mask(self.network, x.shape[0], x.shape[-1])
        return _oracle_heads(x, [h.shape for h in real])


# -------------------------------------------------------------------------------------------------------------
# FLOPs
# -------------------------------------------------------------------------------------------------------------


def _fused_attention_flops(query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> int:
    return sdpa_flop_count(query, key, value)


# torch's FlopCounterMode has no formula for the fused CPU attention kernel (it would count 0): same as the others.
_EXTRA_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _fused_attention_flops}


def count_flops(function: Callable[[], Any]) -> int:
    """FLOPs (multiply and add counted separately) of the convolutions, matmuls and attention ``function`` runs."""
    counter = FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS)
    with torch.inference_mode(), counter:
        function()
    return int(counter.get_total_flops())


def _module_device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


class FlopMeter:
    """Adds up network FLOPs per call without slowing the timed run.

    A PropMask forward costs exactly ``a * guides + b * queries`` (the image encoder sees both, the mask encoder and
    key / value projections only guides, attention and decoder only queries); ``a`` and ``b`` are counted once per
    input size with two tiny forwards. Box2Mask is linear in its batch.
    """

    def __init__(self) -> None:
        self.flops = {"propmask": 0, "box2mask": 0}
        self._propmask: dict[tuple[int, int], tuple[int, int]] = {}
        self._box2mask: dict[tuple[int, int], int] = {}

    def reset(self) -> None:
        self.flops = {"propmask": 0, "box2mask": 0}

    def add_propmask(self, network: nn.Module, guides: int, queries: int, size: int) -> None:
        key = (id(network), size)
        if key not in self._propmask:
            device = _module_device(network)
            g, m = torch.zeros(1, 1, size, size, device=device), torch.ones(1, 1, size, size, device=device)

            def run(n: int) -> int:
                q, i = torch.zeros(n, 1, size, size, device=device), torch.zeros(n, dtype=torch.long, device=device)
                return count_flops(lambda: network.forward_indexed(g, m, q, i))

            one, two = run(1), run(2)
            self._propmask[key] = (2 * one - two, two - one)
        per_guide, per_query = self._propmask[key]
        self.flops["propmask"] += per_guide * guides + per_query * queries

    def add_box2mask(self, network: nn.Module, batch: int, size: int) -> None:
        key = (id(network), size)
        if key not in self._box2mask:
            x = torch.zeros(1, 1, size, size, device=_module_device(network))
            self._box2mask[key] = count_flops(lambda: network(x))
        self.flops["box2mask"] += self._box2mask[key] * batch

    @property
    def total(self) -> int:
        return sum(self.flops.values())


# -------------------------------------------------------------------------------------------------------------
# memory, timing, machine
# -------------------------------------------------------------------------------------------------------------


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class PeakRSS:
    """Peak resident memory above the starting RSS (Linux ``VmHWM``, reset through ``/proc/self/clear_refs``).

    Counts everything the process touches (torch's allocator included, which ``tracemalloc`` cannot see).
    """

    def __enter__(self) -> PeakRSS:
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
            self.resettable = True
        except OSError:
            self.resettable = False
        self.start_kb = _status_kb("VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak_kb = _status_kb("VmHWM")

    @property
    def megabytes(self) -> float:
        return max(self.peak_kb - self.start_kb, 0) / 1024.0


class PeakGPU:
    """Peak CUDA memory torch allocated during the block, above what was allocated at its start (the weights).

    ``torch.cuda.max_memory_allocated`` after a reset of the peak statistics; on a non-CUDA device a no-op (0 MB).
    """

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.enabled = self.device.type == "cuda"
        self.start_bytes = self.peak_bytes = 0

    def __enter__(self) -> PeakGPU:
        if self.enabled:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start_bytes = torch.cuda.memory_allocated(self.device)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)

    @property
    def megabytes(self) -> float:
        return max(self.peak_bytes - self.start_bytes, 0) / 2**20


class Stopwatch:
    def __init__(self) -> None:
        self.seconds = 0.0

    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def _busy_jiffies() -> int:
    """Non-idle CPU time of the whole machine (all processes), in clock ticks."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields[:8]) - idle


class OtherLoad:
    """Share of the machine's CPU that OTHER processes used while the block ran (0 = a quiet machine).

    Busy time of the whole machine (``/proc/stat``) minus this process's own CPU time, over wall time x cores.
    """

    def __enter__(self) -> OtherLoad:
        self.start = (time.perf_counter(), _busy_jiffies(), sum(os.times()[:4]))
        return self

    def __exit__(self, *exc: object) -> None:
        wall, busy, own = time.perf_counter(), _busy_jiffies(), sum(os.times()[:4])
        ticks = os.sysconf("SC_CLK_TCK")
        others = (busy - self.start[1]) / ticks - (own - self.start[2])
        self.share = max(others, 0.0) / max((wall - self.start[0]) * (os.cpu_count() or 1), 1e-9)


def wait_until_quiet(max_share: float = 0.1, window: float = 10.0, timeout: float = 0.0) -> float:
    """Sleep until other processes use less than ``max_share`` of the CPU over ``window`` seconds.

    Returns the last measured share; gives up after ``timeout`` seconds (0: measure once and return).
    """
    deadline = time.perf_counter() + timeout
    while True:
        with OtherLoad() as load:
            time.sleep(window)
        if load.share < max_share or time.perf_counter() >= deadline:
            return load.share


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


_RUN_LOAD: OtherLoad | None = None


def machine_line(threads: int, device: torch.device | str = "cpu") -> str:
    """The machine (and GPU on a CUDA ``device``), versions, threads, date, and how much CPU other processes took
    since :func:`set_threads`."""
    others = ""
    if _RUN_LOAD is not None:
        _RUN_LOAD.__exit__(None, None, None)
        others = f", other processes used {_RUN_LOAD.share:.0%} of the CPU during the run"
    gpu = ""
    if torch.device(device).type == "cuda":
        gpu = f", GPU {torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return (
        f"{cpu_model()}, {os.cpu_count()} cores{gpu}, torch {torch.__version__}, {threads} threads, "
        f"python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}{others}"
    )


def set_threads(threads: int | None, wait_quiet: float = 0.0) -> int:
    """Set torch's threads (default: all cores); optionally wait up to ``wait_quiet`` s for a quiet machine first.

    Starts the measurement of other processes' CPU use that :func:`machine_line` reports.
    """
    global _RUN_LOAD
    threads = int(threads or os.cpu_count() or 1)
    torch.set_num_threads(threads)
    if wait_quiet > 0:
        share = wait_until_quiet(timeout=wait_quiet)
        print(f"# other processes' CPU share before starting: {share:.0%}", file=sys.stderr)
    _RUN_LOAD = OtherLoad().__enter__()
    return threads


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_nifti(array: np.ndarray, path: Path, spacing: Sequence[float] = SPACING) -> Path:
    import nibabel as nib

    image = nib.Nifti1Image(array, affine(spacing))
    image.set_qform(affine(spacing), code=1)
    image.set_sform(affine(spacing), code=1)
    nib.save(image, str(path))
    return path
