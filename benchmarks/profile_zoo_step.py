"""Where a zoo model's training step spends its time, by TensorFlow's profiler.

    python benchmarks/profile_zoo_step.py resnet20 --multiplier mbm7 --batch 128 --steps 3

Builds the model (fp32 Keras, or its AM twin), traces and warms one SGD step, then records
--steps steps with tf.profiler and reads the trace (xplane.pb) back: per op, the summed time
of its executions on TF's threads, grouped by layer and phase (forward, dX = the gradient
with respect to the layer input, dW = the kernel gradient, other), and the threads' idle share
(wall time x threads - busy time).  Prints a table; --json writes the rows.
"""

import argparse
import collections
import glob
import json
import os
import sys
import tempfile
import time

import numpy as np


def _phase(name, op_type, model_name):
    """forward / dX / dW / backward / optimizer, from the op's name and type: the forward ops
    are under the model's name scope, the gradients' are not (and dense dX/dW are both MatMul)."""
    lower = op_type.lower()
    if "backpropinput" in lower or "inputgrad" in lower:
        return "dX"
    if "backpropfilter" in lower or "filtergrad" in lower:
        return "dW"
    if name.split("/")[0].startswith(model_name) and "gradient" not in name:
        return "forward"
    if name.startswith(("sgd", "SGD")) or op_type.startswith(("Assign", "ResourceApply")):
        return "optimizer"
    return "backward"


def _layer(name):
    """The Keras layer an op belongs to (the path segment after the model name), or the op name."""
    parts = [p for p in name.split("/") if p and not p.startswith("gradient")]
    for p in parts[1:]:
        if not p.startswith(("StatefulPartitionedCall", "PartitionedCall", "while", "cond")):
            return p
    return parts[0] if parts else name


def _read_trace(logdir):
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    (path,) = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    return space


def _op_events(space):
    """(op name, op type, thread, start ns, duration ns) of every TF op execution on the host."""
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        meta = plane.event_metadata
        for line in plane.lines:
            for ev in line.events:
                md = meta[ev.metadata_id]
                label = md.name
                if ":" not in label or "::" in label:  # TF op events are "name:Type"; "A::B" are TF's own
                    continue
                name, op_type = label.rsplit(":", 1)
                if not op_type or " " in op_type:
                    continue
                yield name, op_type, line.id, line.timestamp_ns + ev.offset_ps // 1000, ev.duration_ps // 1000


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--multiplier", default="mbm7")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--json")
    p.add_argument(
        "--perf", metavar="FILE", help="also record the steps with `perf record` into FILE (CPU samples by symbol)"
    )
    a = p.parse_args(argv)

    import keras
    import tensorflow as tf

    from approxtrain import build_info, models
    from approxtrain.bench import zoo

    shape = dict((m, s) for m, s, _ in zoo.MODELS)[a.model]
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(0, 1, (a.batch, *shape)).astype(np.float32))
    y = tf.constant(rng.integers(0, 10, a.batch).astype(np.int32))
    keras.utils.set_random_seed(0)
    model = models.build(a.model, shape, 10, multiplier=a.multiplier)
    step = zoo._train_step(model, x, y)
    step()
    step()
    if a.perf:  # CPU samples of this process over the same kind of steps, before TF's profiler runs
        import signal
        import subprocess

        perf = subprocess.Popen(
            ["perf", "record", "-F", "1999", "-o", a.perf, "-p", str(os.getpid())],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)  # perf attaches
        for _ in range(a.steps):
            step()
        perf.send_signal(signal.SIGINT)
        perf.wait()
    logdir = tempfile.mkdtemp(prefix="zoo_profile_")
    cpu0, start = os.times(), time.perf_counter()
    for _ in range(a.steps):  # unprofiled: the CPU time all threads use per step
        step()
    cpu1, wall_plain = os.times(), time.perf_counter() - start
    cpu_s = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / a.steps
    tf.profiler.experimental.start(logdir)
    start = time.perf_counter()
    for _ in range(a.steps):
        step()
    wall = time.perf_counter() - start
    tf.profiler.experimental.stop()

    events = list(_op_events(_read_trace(logdir)))
    by_op = collections.defaultdict(float)
    by_phase = collections.defaultdict(float)
    by_type = collections.defaultdict(float)
    threads = set()
    for name, op_type, tid, _, dur in events:
        if op_type in ("__inference_step", "") or name.startswith("__inference"):
            continue
        threads.add(tid)
        by_op[(_layer(name), _phase(name, op_type, model.name), op_type)] += dur / 1e9 / a.steps
        by_phase[_phase(name, op_type, model.name)] += dur / 1e9 / a.steps
        by_type[op_type] += dur / 1e9 / a.steps
    busy = sum(by_phase.values())
    cores = tf.config.threading.get_intra_op_parallelism_threads() or len(os.sched_getaffinity(0))
    step_s, plain_s = wall / a.steps, wall_plain / a.steps
    print(
        f"{a.model} {a.multiplier} batch {a.batch}: step {plain_s * 1e3:.1f} ms wall unprofiled "
        f"({step_s * 1e3:.1f} ms profiled); CPU time {cpu_s * 1e3:.1f} ms = {cpu_s / (plain_s * cores) * 100:.0f}% of "
        f"{cores} cores (the rest: threads idle or preempted); op time {busy * 1e3:.1f} ms = "
        f"{busy / step_s * 100:.0f}% of the profiled step (under 100%: time between ops); "
        f"gemm path {build_info()['cpu_gemm_path']['m<=7']}, {os.environ.get('APPROXTRAIN_CPU_PATH', 'auto')}"
    )
    print("by phase:", ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in sorted(by_phase.items(), key=lambda t: -t[1])))
    print("by op type:", ", ".join(f"{k} {v * 1e3:.1f}" for k, v in sorted(by_type.items(), key=lambda t: -t[1])[:12]))
    print(f"  {'layer':<28} {'phase':<18} {'op':<34} {'ms/step':>8} {'share':>6}")
    rows = []
    for (layer, phase, op_type), s in sorted(by_op.items(), key=lambda t: -t[1])[: a.top]:
        rows.append({"layer": layer, "phase": phase, "op": op_type, "ms": s * 1e3, "share": s / busy})
        print(f"  {layer:<28} {phase:<18} {op_type:<34} {s * 1e3:>8.2f} {s / busy * 100:>5.1f}%")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(
                {
                    "model": a.model,
                    "multiplier": a.multiplier,
                    "step_ms": plain_s * 1e3,
                    "cpu_ms": cpu_s * 1e3,
                    "rows": rows,
                },
                f,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
