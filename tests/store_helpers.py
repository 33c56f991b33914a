"""Helpers of the multiplier-store tests (the `home` fixture itself is in conftest.py)."""


def registry_files(home):
    """The store's files under APPROXTRAIN_HOME `home`, less its lock file (registry._store_lock)."""
    d = home / "multipliers"
    return sorted(p.name for p in d.iterdir() if p.name != ".lock") if d.exists() else []
