"""The PAM bundle's own code, imported by its configs as ``scripts`` (``"$import scripts"``), as in every MONAI
model-zoo bundle with custom code.

``python -m monai.bundle run`` puts the bundle folder (the parent of ``configs/``) on ``sys.path`` before it runs
the ``run`` expressions, so ``scripts.*`` may be used everywhere except in ``initialize``. The networks, inferers,
transforms and engine handlers come from the ``pam-monai`` package (named by their public path in the configs);
this package only holds what exists for the configs:

* :mod:`scripts.errors`: one-line ``error: …`` exits for bad input (:func:`~scripts.errors.one_line_errors`,
  :class:`~scripts.errors.StopOnInputError`);
* :mod:`scripts.inference`: the inference section's datalist (one image and prompt, or a folder of cases) and
  ``prepare_batch``;
* :mod:`scripts.training`: the training section's helpers (networks, task samplers, cached volumes, export);
* :mod:`scripts.evaluation`: splitting the evaluation across ``torchrun`` ranks and gathering its table;
* :mod:`scripts.export`: MONAI's single-input checks (``ckpt_export``, ``verify_net_in_out``) for three-input PropMask.
"""

from . import errors, evaluation, export, inference, training

__all__ = ["errors", "evaluation", "export", "inference", "training"]
