"""One propagation round of PropMask (2 guiding slices, 2 x 20 query slices) under different execution backends.

Rows: eager PyTorch (the default) at 1 and at all threads; TorchScript (``pam_monai.networks.export``); ONNX Runtime
(if ``onnx`` / ``onnxruntime`` are installed); eager under ``torch.autocast`` bfloat16 (``PropagationInferer(amp=
True)``; changes the logits, so the table also gives the share of pixels whose argmax differs from float32 and the
largest logit difference). Random weights; the fastest of ``--repeat`` timed calls after a warm-up.

Usage::

    python benchmarks/bench_backends.py --configs light paper --threads 2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_line, markdown_table, set_threads  # noqa: E402

from pam_monai.networks import build_propmask  # noqa: E402
from pam_monai.networks.export import export_onnx, export_torchscript, load_onnx, load_torchscript  # noqa: E402


def timed(function: Callable[[], list[torch.Tensor]], repeat: int) -> tuple[float, list[torch.Tensor]]:
    out = function()  # warm-up
    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return min(seconds), out  # other processes only ever slow a call down


def bench_config(config: str, threads: int, repeat: int, queries: int) -> list[list[str]]:
    rows = []
    torch.manual_seed(0)
    network = build_propmask(config).eval()
    size = network.input_size
    g = torch.randn(2, 1, size, size)
    m = torch.zeros(2, 1, size, size)
    m[:, :, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1
    q = torch.randn(2 * queries, 1, size, size)
    i = torch.arange(2).repeat_interleave(queries)
    slices = len(q)
    backends: dict[str, Callable[[], list[torch.Tensor]]] = {}

    def eager() -> list[torch.Tensor]:
        with torch.inference_mode():
            return network.forward_indexed(g, m, q, i)

    def one_thread() -> list[torch.Tensor]:
        torch.set_num_threads(1)
        try:
            return eager()
        finally:
            torch.set_num_threads(threads)

    def bf16() -> list[torch.Tensor]:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return [h.float() for h in network.forward_indexed(g, m, q, i)]

    backends[f"eager, {threads} threads"] = eager
    if threads > 1:
        backends["eager, 1 thread"] = one_thread
    with tempfile.TemporaryDirectory() as tmp:
        export_torchscript(network, Path(tmp) / "p.pt")
        scripted = load_torchscript(Path(tmp) / "p.pt")
        backends["TorchScript (trace)"] = lambda: scripted.forward_indexed(g, m, q, i)
        try:
            export_onnx(network, Path(tmp) / "p.onnx")
            onnx_model = load_onnx(Path(tmp) / "p.onnx", threads=threads)
            backends["ONNX Runtime (CPU)"] = lambda: onnx_model.forward_indexed(g, m, q, i)
        except ImportError:
            print("# onnx / onnxruntime not installed: no ONNX row", file=sys.stderr)
        backends["eager + autocast bf16"] = bf16
        reference = None
        with torch.inference_mode():
            for name, function in backends.items():
                seconds, out = timed(function, repeat)
                if reference is None:
                    reference, base = out, seconds
                diff = max(float((a - b.float()).abs().max()) for a, b in zip(reference, out))
                flips = float((reference[0].argmax(1) != out[0].float().argmax(1)).float().mean())
                rows.append(
                    [
                        config,
                        name,
                        f"{seconds:.3f}",
                        f"{seconds / slices * 1000:.1f}",
                        f"{base / seconds:.2f}x",
                        f"{diff:.1e}",
                        f"{flips * 100:.3f} %",
                    ]
                )
                print(f"# {config} {name}: {seconds:.3f} s", file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["light", "paper"], choices=["light", "paper"])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--queries", type=int, default=20, help="query slices per guiding slice (2 guides)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, help="wait up to N s for other processes to idle")
    args = parser.parse_args(argv)
    threads = set_threads(args.threads, args.wait_quiet)
    rows = [row for config in args.configs for row in bench_config(config, threads, args.repeat, args.queries)]
    print(f"PropMask, one round: 2 guiding + {2 * args.queries} query slices, random weights, fastest of {args.repeat}")
    print(f"machine: {machine_line(threads)}\n")
    headers = ["config", "backend", "s / round", "ms / slice", "speed vs eager", "max abs logit diff"]
    headers += ["argmax differs"]
    print(markdown_table(headers, rows))


if __name__ == "__main__":
    main()
