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


def cpu_field(name):
    """A field of /proc/cpuinfo's first processor ("vendor_id", "cpu family"), or None."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == name:
                    return value.strip()
    except OSError:
        pass
    return None


FLAGS = cpu_flags()
# AMD Zen 4 (family 25 with AVX-512) runs 512-bit operations as two 256-bit halves.
HALF_WIDTH_AVX512 = cpu_field("vendor_id") == "AuthenticAMD" and cpu_field("cpu family") == "25"
