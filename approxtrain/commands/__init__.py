"""Subcommands of the `approxtrain` CLI (see approxtrain/cli.py)."""
