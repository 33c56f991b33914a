"""Registry of multipliers (placeholder until the registry lands)."""
from approxtrain.multipliers._multiplier import Multiplier  # noqa: F401
