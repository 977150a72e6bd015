"""taskmill: a git-native work ledger and an orchestrator for coding agents."""

__version__ = "0.1.0"
