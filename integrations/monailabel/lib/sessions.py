"""Click sessions: 3D Slicer re-sends every click of a segment on each update; each clicked slice is a correction.

A session is keyed by the client (``client_id`` and MONAI Label ``session_id``), the image and the segment name, so
that concurrent users never share one. A request is answered in steps:

1. The base prompt (a box, a 3D box or an uploaded label; without one, the clicks on the slice of the first
   foreground click, grown into a mask) is propagated through the volume.
2. Every other clicked slice is a correction: the current result on that slice is edited by its clicks with
   :func:`pam_monai.prompts.clicks.correct_plane` and becomes a guide, and the object is propagated again from all
   guides. A guide left empty means "the object is not here": the result is cleared from that slice outward (away
   from the other guides).

The session keeps the state after each step. A request resumes from the session's longest chain of states whose
base is the request's and whose every step (a slice with its exact clicks) is still in the request, then applies
the request's other steps in the order their slices were first clicked (foreground clicks first: 3D Slicer sends
the two lists apart). So a click added on a new slice costs one propagation; a click added on a corrected slice
redoes that slice's step and the steps after it; deleting a click goes back to the state without it. A state is
only reused when all its clicks are in the request, so one client's clicks never enter another's result, even
under the same key; without a session the steps run in that order from the base.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pam_monai.errors import PromptError
from pam_monai.prompts.clicks import correct_plane, grow_from_clicks
from pam_monai.prompts.request import RequestPrompt

__all__ = ["ClickSessions", "SessionOutcome"]

Propagate = Callable[[dict[str, Any]], tuple[np.ndarray, dict[int, list[int]]]]
"""``kwargs of PropagationInferer.propagate -> (labels (X, Y, Z), prompt slices per label)``."""


@dataclass
class _State:
    key: Any
    guides: dict[int, np.ndarray]
    labels: np.ndarray


@dataclass
class SessionOutcome:
    """The labels of a request and how they were reached (for the response)."""

    labels: np.ndarray
    prompt_slices: dict[int, list[int]]
    info: dict[str, Any] = field(default_factory=dict)


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

    def run(self, prompt: RequestPrompt, image: Any, volume: np.ndarray, propagate: Propagate) -> SessionOutcome:
        """The labels for ``prompt`` on ``volume`` (``(X, Y, Z)``), resuming a cached state when one matches.

        Raises:
            PromptError: clicks that correct a multi-object prompt, or a first click slice with no foreground.
        """
        volume = np.asarray(volume)
        axis = prompt.axis
        steps = prompt.steps()
        base = dict(prompt.base) if prompt.base is not None else None
        base_key: Any = _base_key(prompt)
        if base is None:  # clicks alone: the slice of the first foreground click is the first mask
            first = next(c for c in prompt.clicks if c[3] > 0)
            seed = next(s for s in steps if s[0] == first[axis])
            steps = [s for s in steps if s[0] != seed[0]]
            mask = grow_from_clicks(_plane(volume, axis, seed[0]), list(seed[1]), list(seed[2]))
            base = {"mask": _volume_with(np.zeros(volume.shape, np.uint8), mask, axis, seed[0])}
            base_key = ("clicks", axis, seed)
        elif steps and "mask" in base and int(base["mask"].max()) > 1:
            raise PromptError("clicks correct one object: upload a label with one object (or name its segment).")
        keys = [base_key, *steps]
        session = (prompt.client, _image_key(prompt.description.get("image", image), volume), prompt.segment)
        with self._session_lock(session):
            with self._lock:
                cached = list(self._sessions.get(session, []))
            wanted = set(keys[1:])
            done = 1 if cached and cached[0].key == keys[0] else 0
            while done and done < len(cached) and cached[done].key in wanted:
                done += 1
            states = cached[:done]
            prompt_slices: dict[int, list[int]] = {}
            if not states:
                labels, prompt_slices = propagate(_kwargs(base, axis))
                labels = np.asarray(labels)
                objects = prompt_slices or {1: []}
                guides = {k: _plane(labels, axis, k) == 1 for k in objects.get(1, [])} if len(objects) == 1 else {}
                states.append(_State(base_key, guides, labels))
            box3d = base.get("box3d")
            applied = {state.key for state in states[1:]}
            for step in [k for k in keys[1:] if k not in applied]:
                index, positive, negative = step
                previous = states[-1]
                current = _plane(previous.labels, axis, index) == 1
                guides = dict(previous.guides)
                guides[index] = correct_plane(current, _plane(volume, axis, index), positive, negative)
                labels, prompt_slices = self._from_guides(guides, volume.shape, axis, box3d, propagate)
                states.append(_State(step, guides, labels))
            with self._lock:
                self._sessions[session] = states[-self.max_steps :] if len(states) > self.max_steps else states
                self._sessions.move_to_end(session)
                while len(self._sessions) > self.max_sessions:
                    dropped, _ = self._sessions.popitem(last=False)
                    self._locks.pop(dropped, None)
        final = states[-1]
        if not prompt_slices:
            prompt_slices = {1: sorted(k for k, g in final.guides.items() if g.any())} if final.guides else {}
        info = {
            "steps": len(keys),
            "reused_steps": done,
            "computed_steps": len(keys) - done,
            "guides": sorted(int(k) for k, g in final.guides.items() if g.any()),
            "cleared": sorted(int(k) for k, g in final.guides.items() if not g.any()),
        }
        return SessionOutcome(labels=final.labels, prompt_slices=prompt_slices, info=info)

    @staticmethod
    def _from_guides(
        guides: dict[int, np.ndarray],
        shape: tuple[int, ...],
        axis: int,
        box3d: Any,
        propagate: Propagate,
    ) -> tuple[np.ndarray, dict[int, list[int]]]:
        drawn = sorted(k for k, g in guides.items() if g.any())
        if not drawn:
            return np.zeros(shape, np.uint8), {}
        prompt = np.zeros(shape, np.uint8)
        for k in drawn:
            _volume_with(prompt, guides[k], axis, k)
        labels, prompt_slices = propagate({"mask_prompt": prompt, "axis": axis})
        labels = np.array(labels, copy=True)
        moved = np.moveaxis(labels, axis, 0)
        for k in (k for k, g in guides.items() if not g.any()):
            if k < drawn[0]:
                moved[: k + 1] = 0
            elif k > drawn[-1]:
                moved[k:] = 0
            else:
                moved[k] = 0
        if box3d is not None:
            start, stop = box3d[:3], box3d[3:]
            inside = np.zeros(shape, bool)
            inside[start[0] : stop[0] + 1, start[1] : stop[1] + 1, start[2] : stop[2] + 1] = True
            labels[~inside] = 0
        return labels, prompt_slices


def _volume_with(volume: np.ndarray, mask: np.ndarray, axis: int, index: int) -> np.ndarray:
    np.moveaxis(volume, axis, 0)[index] = np.asarray(mask, dtype=volume.dtype)
    return volume


def _kwargs(base: dict[str, Any], axis: int) -> dict[str, Any]:
    """The base prompt's fields as keywords of ``PropagationInferer.propagate``."""
    if "mask" in base:
        return {"mask_prompt": base["mask"], "axis": axis}
    if "box3d" in base:
        return {"box3d": tuple(base["box3d"]), "axis": axis}
    return {"box": tuple(base["box"]), "slice_index": int(base["slice"]), "axis": axis}
