"""A run's sparsity settings (TrainConfig.sparsity) checked, and turned into a training callback.

    {"method": "prune", "target": 0.9, "schedule": "gradual", "start": 0.0, "end": 5.0,
     "every": None, "scope": "layer"}
    {"method": "chase", "sparsity": 0.9, "channel_sparsity": 0.3, "end": 7.5,
     "update_every": None, "drop_fraction": 0.3, "distribution": "erk", "exploration": "layer",
     "channel_score": "umm", "channel_scope": "global", "min_channels": 0.5}

start/end are EPOCHS here (floats; the callbacks count optimizer steps: end epochs =
round(end * steps_per_epoch) steps); every/update_every are steps, None = a default from the
steps per epoch (10 pruning updates, 4 prune-and-grow updates per epoch). Chase's rule keys
(exploration, channel_score, channel_scope, min_channels) were added later: settings without them
(older run folders) read as chase.RULE_DEFAULTS, the rules those runs trained with.
"""

import math

METHODS = ("prune", "chase")
PRUNE_KEYS = ("method", "target", "schedule", "start", "end", "every", "scope")
CHASE_RULES = ("exploration", "channel_score", "channel_scope", "min_channels")
CHASE_KEYS = (
    "method",
    "sparsity",
    "channel_sparsity",
    "end",
    "update_every",
    "drop_fraction",
    "distribution",
    *CHASE_RULES,
)


def check_fraction(what, value, upper_inclusive=False, lower_inclusive=True):
    """`value` as a float in [0, 1) (or the bounds asked for); ValueError naming `what` and `value`."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value >= 0 if lower_inclusive else value > 0) and (value <= 1 if upper_inclusive else value < 1)
    if not ok:
        interval = f"{'[' if lower_inclusive else '('}0, 1{']' if upper_inclusive else ')'}"
        raise ValueError(f"{what} must be a fraction in {interval}, got {value!r}")
    return float(value)


def check_steps(what, value, minimum=0):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


def check_epochs(what, value):
    """An epoch count >= 0 (it may lie beyond --epochs: a run trained in parts reaches it later)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    if not ok:
        raise ValueError(f"{what} must be a number of epochs >= 0, got {value!r}")
    return float(value)


def validate(settings, epochs):
    """`settings` (TrainConfig.sparsity) checked for a run of `epochs`; returns them, Chase's
    rule keys filled in where older settings lack them."""
    if settings is None:
        return None
    if not isinstance(settings, dict) or settings.get("method") not in METHODS:
        raise ValueError(f"sparsity settings must be a dict with method 'prune' or 'chase', got {settings!r}")
    if settings["method"] == "chase":
        from approxtrain.sparsity.chase import RULE_DEFAULTS

        settings = {**{k: RULE_DEFAULTS[k] for k in CHASE_RULES}, **settings}
    keys = PRUNE_KEYS if settings["method"] == "prune" else CHASE_KEYS
    unknown, missing = sorted(set(settings) - set(keys)), sorted(set(keys) - set(settings))
    if unknown or missing:
        raise ValueError(f"{settings['method']} sparsity settings: unknown {unknown}, missing {missing}")
    if settings["method"] == "prune":
        from approxtrain.sparsity.pruning import SCHEDULES, SCOPES

        check_fraction("--prune", settings["target"], lower_inclusive=False)
        if settings["schedule"] not in SCHEDULES:
            raise ValueError(f"--prune-schedule must be one of {', '.join(SCHEDULES)}, got {settings['schedule']!r}")
        if settings["scope"] not in SCOPES:
            raise ValueError(f"--prune-scope must be one of {', '.join(SCOPES)}, got {settings['scope']!r}")
        start = check_epochs("--prune-start", settings["start"])
        end = check_epochs("--prune-end", settings["end"])
        if end < start:
            raise ValueError(f"--prune-end ({end}) must not come before --prune-start ({start})")
        if settings["every"] is not None:
            check_steps("--prune-every", settings["every"], minimum=1)
    else:
        from approxtrain.sparsity.chase import CHANNEL_SCOPES, CHANNEL_SCORES, DISTRIBUTIONS, EXPLORATIONS

        check_fraction("--sparsity", settings["sparsity"], lower_inclusive=False)
        check_fraction("--channel-sparsity", settings["channel_sparsity"])
        check_fraction("--drop-fraction", settings["drop_fraction"], upper_inclusive=True)
        end = check_epochs("--dst-end", settings["end"])
        if end <= 0:
            raise ValueError(f"--dst-end must be a number of epochs > 0, got {settings['end']!r}")
        if settings["update_every"] is not None:
            check_steps("--dst-update-every", settings["update_every"], minimum=1)
        if settings["distribution"] not in DISTRIBUTIONS:
            raise ValueError(
                f"--sparse-init must be one of {', '.join(DISTRIBUTIONS)}, got {settings['distribution']!r}"
            )
        for key, flag, choices in (
            ("exploration", "--dst-exploration", EXPLORATIONS),
            ("channel_score", "channel_score", CHANNEL_SCORES),
            ("channel_scope", "channel_scope", CHANNEL_SCOPES),
        ):
            if settings[key] not in choices:
                raise ValueError(f"{flag} must be one of {', '.join(choices)}, got {settings[key]!r}")
        check_fraction("min_channels", settings["min_channels"], upper_inclusive=True)
    return settings


def prune_settings(target, schedule="gradual", start=None, end=None, every=None, scope="layer", epochs=1):
    """TrainConfig.sparsity for magnitude pruning; start/end default to 0 and half of `epochs`
    (gradual: the second half fine-tunes at the final sparsity) or both half of `epochs` (oneshot)."""
    half = epochs / 2
    if start is None:
        start = 0.0 if schedule == "gradual" else half
    if end is None:
        end = max(half, start) if schedule == "gradual" else start
    return {
        "method": "prune", "target": target, "schedule": schedule, "start": start, "end": end,
        "every": every, "scope": scope,
    }  # fmt: skip


def chase_settings(sparsity, channel_sparsity=0.0, end=None, update_every=None, drop_fraction=0.3,
                   distribution="erk", epochs=1, **rules):  # fmt: skip
    """TrainConfig.sparsity for Chase; updates stop at `end` epochs (default 3/4 of `epochs`, as RigL).
    `rules`: any of CHASE_RULES (default chase.RULE_DEFAULTS), recorded so a resume uses them."""
    from approxtrain.sparsity.chase import RULE_DEFAULTS

    unknown = sorted(set(rules) - set(CHASE_RULES))
    if unknown:
        raise TypeError(f"chase_settings: unknown rule(s) {unknown}; choose from {list(CHASE_RULES)}")
    return {
        "method": "chase", "sparsity": sparsity, "channel_sparsity": channel_sparsity,
        "end": 0.75 * epochs if end is None else end, "update_every": update_every,
        "drop_fraction": drop_fraction, "distribution": distribution,
        **{k: rules.get(k, RULE_DEFAULTS[k]) for k in CHASE_RULES},
    }  # fmt: skip


def make_callback(settings, steps_per_epoch, seed=0):
    """The MagnitudePruning or Chase callback of a run's sparsity settings (None: dense)."""
    if settings is None:
        return None

    def steps(epochs):
        return int(round(epochs * steps_per_epoch))

    if settings["method"] == "prune":
        from approxtrain.sparsity.pruning import MagnitudePruning

        return MagnitudePruning(
            settings["target"],
            schedule=settings["schedule"],
            start=steps(settings["start"]),
            end=steps(settings["end"]),
            every=settings["every"] or max(1, steps_per_epoch // 10),
            scope=settings["scope"],
        )
    from approxtrain.sparsity.chase import Chase

    return Chase(
        settings["sparsity"],
        channel_sparsity=settings["channel_sparsity"],
        update_every=settings["update_every"] or max(1, steps_per_epoch // 4),
        end=max(1, steps(settings["end"])),
        drop_fraction=settings["drop_fraction"],
        distribution=settings["distribution"],
        seed=seed,
        **{k: settings[k] for k in CHASE_RULES},
    )


def parse_variants(text):
    """`--sparsity-variants dense,prune0.9,chase0.9,chase0.9c0.3` -> [(label, kind, values)]:
    kind "dense" | "prune" (values: (target,)) | "chase" (values: (sparsity, channel sparsity or
    None: --channel-sparsity))."""
    import re

    labels = [v.strip() for v in text.split(",") if v.strip()]
    if not labels:
        raise ValueError(f"--sparsity-variants needs at least one variant, got {text!r}")
    variants = []
    for label in labels:
        number = r"(\d*\.?\d+(?:[eE]-?\d+)?)"
        if label == "dense":
            variants.append((label, "dense", ()))
        elif m := re.fullmatch(f"prune{number}", label):
            variants.append(
                (label, "prune", (check_fraction(f"variant {label!r}", float(m[1]), lower_inclusive=False),))
            )
        elif m := re.fullmatch(f"chase{number}(?:c{number})?", label):
            s = check_fraction(f"variant {label!r}", float(m[1]), lower_inclusive=False)
            c = check_fraction(f"channel sparsity of variant {label!r}", float(m[2])) if m[2] else None
            variants.append((label, "chase", (s, c)))
        else:
            raise ValueError(
                f"--sparsity-variants: unknown variant {label!r}; use dense, prune<S> (e.g. prune0.9), "
                f"chase<S> or chase<S>c<C> (e.g. chase0.9c0.3)"
            )
    duplicates = sorted({v for v in labels if labels.count(v) > 1})
    if duplicates:
        raise ValueError(f"--sparsity-variants lists {', '.join(duplicates)} more than once")
    return variants
