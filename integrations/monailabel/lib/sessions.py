"""Click sessions: 3D Slicer re-sends every click of a segment on each update; each clicked slice is a correction.

A session is keyed by the client (``client_id`` and MONAI Label ``session_id``), the image and the segment name, so
that concurrent users never share one. A request is answered in steps, with the library's interactive API
(:class:`pam_monai.predictor.PAMPredictor`):

1. The base prompt (a box, a 3D box or an uploaded label; without one, the clicks on the slice of the first
   foreground click, grown into a mask) is segmented (:meth:`~pam_monai.predictor.PAMPredictor.segment`).
2. Every other clicked slice is a correction (:meth:`~pam_monai.predictor.PAMPredictor.refine` with its clicks):
   the current result on that slice is edited by its clicks with :func:`pam_monai.prompts.clicks.correct_plane`
   and becomes a guide; only the slices between its neighbouring guides are recomputed. A guide left empty ends
   the object there.

The session keeps the state (labels and guide slices) after each step. A request resumes from the session's
longest chain of states whose base is the request's and whose every step (a slice with its exact clicks) is still
in the request (:meth:`~pam_monai.predictor.PAMPredictor.open_session` on that state's labels and guides), then
applies the request's other steps in the order their slices were first clicked (foreground clicks first: 3D Slicer
sends the two lists apart). So a click on a new slice costs one correction; a click added on a corrected slice
redoes that slice's step and the steps after it; deleting a click goes back to the state without it. A state is
only reused when all its clicks are in the request, so one client's clicks never enter another's result, even
under the same key.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from pam_monai.errors import PromptError
from pam_monai.predictor import PAMPredictor
from pam_monai.prompts.clicks import grow_from_clicks
from pam_monai.prompts.core import plane_axes
from pam_monai.prompts.request import RequestPrompt

__all__ = ["ClickSessions", "SessionOutcome"]


@dataclass
class _State:
    key: Any
    labels: torch.Tensor
    guides: list[int]
    cleared: list[int] = field(default_factory=list)


@dataclass
class SessionOutcome:
    """The labels of a request and how they were reached (for the response)."""

    labels: np.ndarray
    prompt_slices: dict[int, list[int]]
    info: dict[str, Any] = field(default_factory=dict)
    rounds: int = 0
    slices_predicted: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


def _plane(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    return np.take(volume, index, axis=axis)


def _image_key(image: Any, volume: np.ndarray) -> str:
    sample = np.ascontiguousarray(volume[:: max(1, volume.shape[0] // 16), :: max(1, volume.shape[1] // 16)])
    digest = hashlib.sha1(sample.tobytes()).hexdigest()[:16]
    return f"{image}|{volume.shape}|{digest}"


def _base_key(prompt: RequestPrompt) -> Any:
    base = prompt.base or {}
    if "mask" in base:
        return ("mask", prompt.axis, hashlib.sha1(np.ascontiguousarray(base["mask"]).tobytes()).hexdigest())
    return ("prompt", prompt.axis, json.dumps({k: v for k, v in base.items()}, sort_keys=True))


def _step_clicks(step: Any, axis: int) -> list[tuple[int, int, int, int]]:
    """A step's ``(slice, positives, negatives)`` as ``(i, j, k, +1 | -1)`` clicks."""
    index, positive, negative = step
    rows, cols = plane_axes(axis)
    clicks = []
    for points, sign in ((positive, 1), (negative, -1)):
        for r, c in points:
            ijk = [0, 0, 0]
            ijk[axis], ijk[rows], ijk[cols] = index, r, c
            clicks.append((ijk[0], ijk[1], ijk[2], sign))
    return clicks


def _clip(labels: torch.Tensor, box3d: Any) -> torch.Tensor:
    if box3d is None:
        return labels
    inside = torch.zeros(labels.shape, dtype=torch.bool)
    inside[box3d[0] : box3d[3] + 1, box3d[1] : box3d[4] + 1, box3d[2] : box3d[5] + 1] = True
    return torch.where(inside, labels, torch.zeros_like(labels))


class ClickSessions:
    """The sessions of one server (thread-safe; at most ``max_sessions``, least recently used dropped).

    Args:
        max_sessions: sessions kept.
        max_steps: cached states per session (older steps are replayed when needed).
    """

    def __init__(self, *, max_sessions: int = 16, max_steps: int = 32) -> None:
        self.max_sessions = max_sessions
        self.max_steps = max_steps
        self._sessions: OrderedDict[Any, list[_State]] = OrderedDict()
        self._locks: dict[Any, threading.Lock] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def _session_lock(self, key: Any) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(key, threading.Lock())

    def run(
        self,
        prompt: RequestPrompt,
        image: Any,
        predictor: PAMPredictor,
        thickness_mm: float | None = None,
    ) -> SessionOutcome:
        """The labels for ``prompt`` on ``predictor``'s image, resuming a cached state when one matches.

        Args:
            prompt: the request's prompt.
            image: the image's name (with its content, part of the session key).
            predictor: a predictor whose image is set (its own sessions are replaced).
            thickness_mm: the neighbourhood per round of the first segmentation (default: the inferer's).

        Raises:
            PromptError: clicks that correct a multi-object prompt, or any prompt that does not fit the image.
        """
        volume = predictor.image.as_tensor().cpu().numpy()  # type: ignore[union-attr]
        axis = prompt.axis
        steps = prompt.steps()
        base = dict(prompt.base) if prompt.base is not None else None
        base_key: Any = _base_key(prompt)
        if base is None:  # clicks alone: the slice of the first foreground click is the first mask
            first = next(c for c in prompt.clicks if c[3] > 0)
            seed = next(s for s in steps if s[0] == first[axis])
            steps = [s for s in steps if s[0] != seed[0]]
            mask = grow_from_clicks(_plane(volume, axis, seed[0]), list(seed[1]), list(seed[2]))
            prompt_volume = np.zeros(volume.shape, np.uint8)
            np.moveaxis(prompt_volume, axis, 0)[seed[0]] = mask
            base = {"mask": prompt_volume}
            base_key = ("clicks", axis, seed)
        elif steps and "mask" in base and int(base["mask"].max()) > 1:
            raise PromptError("clicks correct one object: upload a label with one object (or name its segment).")
        keys = [base_key, *steps]
        box3d = base.get("box3d")
        session = (prompt.client, _image_key(image, volume), prompt.segment)
        counts: dict[str, Any] = {"rounds": 0, "slices_predicted": 0, "seconds": {}}
        with self._session_lock(session):
            with self._lock:
                cached = list(self._sessions.get(session, []))
            wanted = set(keys[1:])
            done = 1 if cached and cached[0].key == keys[0] else 0
            while done and done < len(cached) and cached[done].key in wanted:
                done += 1
            states = cached[:done]
            if states:
                result = predictor.open_session(states[-1].labels, axis, {1: states[-1].guides})
            else:
                args = prompt.args if prompt.base is not None else {"mask_prompt": base["mask"], "axis": axis}
                result = predictor.segment(**args, thickness_mm=thickness_mm)
                counts["rounds"] += result.rounds
                counts["slices_predicted"] += result.slices_predicted
                counts["seconds"] = {k: float(v) for k, v in result.seconds.items()}
                result.labels = _clip(result.labels, box3d)
                states.append(_State(base_key, result.labels, list(result.prompt_slices.get(1, []))))
            applied = {state.key for state in states[1:]}
            for step in [k for k in keys[1:] if k not in applied]:
                result = predictor.refine(result, clicks=_step_clicks(step, axis), label=1)
                counts["slices_predicted"] += result.slices_predicted
                result.labels = _clip(result.labels, box3d)
                own = (result.guides or {}).get(1, {})
                cleared = sorted(int(k) for k, m in own.items() if not bool(m.any()))
                states.append(
                    _State(step, result.labels, sorted(int(k) for k in own if int(k) not in cleared), cleared)
                )
            with self._lock:
                self._sessions[session] = states[-self.max_steps :] if len(states) > self.max_steps else states
                self._sessions.move_to_end(session)
                while len(self._sessions) > self.max_sessions:
                    dropped, _ = self._sessions.popitem(last=False)
                    self._locks.pop(dropped, None)
        final = states[-1]
        labels = final.labels.cpu().numpy()
        present = sorted(int(v) for v in np.unique(labels) if v > 0)
        prompt_slices = {1: final.guides} if present == [1] or not present else dict(result.prompt_slices)
        info = {
            "steps": len(keys),
            "reused_steps": done,
            "computed_steps": len(keys) - done,
            "guides": final.guides,
            "cleared": final.cleared,
        }
        return SessionOutcome(labels=labels, prompt_slices=prompt_slices, info=info, **counts)
