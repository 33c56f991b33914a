"""The CPU's feature flags as Linux reports them, for tests that force each CPU path the machine
has (a path the CPU lacks is never enabled, so its tests would only rerun the automatic choice)."""


def cpu_flags():
    """The set of flags in /proc/cpuinfo's first "flags" line (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


FLAGS = cpu_flags()
