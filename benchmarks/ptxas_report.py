"""Registers, stack frame and spills of each CUDA kernel, from a build log
made with -DAPPROXTRAIN_PTXAS_VERBOSE=ON (ptxas -v).

    python benchmarks/ptxas_report.py build.log
"""

import re
import shutil
import subprocess
import sys


def demangle(name):
    if shutil.which("c++filt") is None:
        return name
    text = subprocess.run(["c++filt", name], capture_output=True, text=True).stdout.strip() or name
    text = re.sub(r"amsim::cuda::|\(anonymous namespace\)::", "", text)
    return text[5:].split("(")[0] if text.startswith("void ") else text


def main(paths):
    rows, current, arch = {}, None, ""
    for path in paths:
        for line in open(path, errors="replace"):
            m = re.search(r"Compiling entry function '(\S+)' for '(sm_\w+)'", line)
            if m:
                current, arch = m.group(1), m.group(2)
                continue
            m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
            if m and current:
                rows.setdefault((current, arch), {})["spill"] = m.groups()
                continue
            m = re.search(r"Used (\d+) registers", line)
            if m and current:
                rows.setdefault((current, arch), {})["regs"] = m.group(1)
    print(f"{'arch':7s} {'regs':>4s}  stack/spill-st/spill-ld  kernel")
    for (name, arch), r in sorted(rows.items(), key=lambda kv: (kv[0][1], demangle(kv[0][0]))):
        spill = "/".join(r.get("spill", ("?",) * 3))
        print(f"{arch:7s} {r.get('regs', '?'):>4s}  {spill:23s}  {demangle(name)}")


if __name__ == "__main__":
    main(sys.argv[1:])
