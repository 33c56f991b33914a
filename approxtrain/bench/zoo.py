"""Bench section `zoo`: one training step of each zoo model, mbm7 and bf16 against fp32.

Per model, a fresh Python process (`python -m approxtrain.bench.zoo --worker ...`) builds
the model once per variant (fp32 Keras, then the AM twins: mbm7 and bf16, or the multipliers
given with --zoo-multipliers, float or integer; same initial weights), traces one SGD step of
each and then times them in turn, step by step (interleaved_medians), so machine load hits
all alike.  Rows report median step times and the ratios AM / fp32.

Peak memory is the step's peak resident-set growth, read from the kernel, in a second process
per model (with TF_ONEDNN_USE_SYSTEM_ALLOCATOR=1, else oneDNN's tensor pool would hide the
step's tensors after the first step): glibc serves every allocation above 64 KiB by mmap and
gives freed memory back (mallopt, malloc_trim), the peak counter is reset (writing 5 to
/proc/self/clear_refs sets VmHWM to VmRSS), one step runs, and VmHWM - VmRSS-before is its
peak growth: activations, gradients and the kernels' scratch buffers as the OS sees them
(TensorFlow's CPU tensors are malloc'ed, so tracemalloc would see none of them).  Two rounds,
interleaved; the larger is reported.

Options shared with the other sections: --sizes (here: batch sizes; default 128, 64 for
MobileNetV2), --repeats, --threads (TensorFlow's intra-op threads and _core's pool), --path
(APPROXTRAIN_CPU_PATH for the section); and --models (names, comma separated).
"""

import argparse
import json
import os
import re
import subprocess
import sys

import numpy as np

# (zoo name, input shape without the batch, default batch): the models issue 17 measures.
MODELS = (
    ("lenet300100", (28, 28, 1), 128),
    ("lenet5", (28, 28, 1), 128),
    ("resnet20", (32, 32, 3), 128),
    ("resnet18", (32, 32, 3), 128),
    ("mobilenetv2", (32, 32, 3), 64),
    ("transformer", (32, 32, 3), 128),
)
DEFAULT_MULTIPLIERS = ("mbm7", "bf16")  # against "fp32", the reference of every ratio
QUICK_MODELS = ("lenet300100", "lenet5")
QUICK_BATCH = 8
NUM_CLASSES = 10
PATH_ENV = "APPROXTRAIN_CPU_PATH"
MEMORY_ROUNDS = 2
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
# The memory phase's process: TF's oneDNN allocator keeps freed tensors in its own pool (a step's
# tensors would be invisible in RSS after the first step); this makes it use malloc, as TF's
# plain CPU allocator does.
MEMORY_ENV = {"TF_ONEDNN_USE_SYSTEM_ALLOCATOR": "1"}


def add_arguments(parser):
    parser.add_argument(
        "--models",
        type=_parse_models,
        help=f"zoo section: only these models, comma separated ({', '.join(m for m, _, _ in MODELS)})",
    )
    parser.add_argument(
        "--zoo-multipliers",
        type=_parse_multipliers,
        metavar="NAMES",
        help=f"zoo section: the AM multipliers timed against fp32, comma separated, float or integer "
        f"(default {','.join(DEFAULT_MULTIPLIERS)})",
    )


def _parse_multipliers(text):
    from approxtrain import multipliers

    names = [n.strip() for n in text.split(",") if n.strip()]
    known = set(multipliers.names())
    for name in names:
        if name == "fp32" or name not in known:
            raise argparse.ArgumentTypeError(
                f"unknown multiplier {name!r} (fp32 is always the reference; see `approxtrain multipliers list`)"
            )
    if not names or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"give distinct multiplier names, got {text!r}")
    return tuple(names)


def _parse_models(text):
    known = [m for m, _, _ in MODELS]
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown model {unknown[0] if unknown else text!r}; choose from {', '.join(known)}"
        )
    return names


# --- the worker: one model, in its own process ------------------------------------------


def _status_kib(key):
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.M).group(1))


def _train_step(model, x, y):
    """One SGD step of `model` (ending in a softmax) on (x, y), as a callable; traced on first call."""
    import keras
    import tensorflow as tf

    optimizer = keras.optimizers.SGD(0.01)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        return loss

    return lambda: step(x, y).numpy()


def _step_peak_mib(steps, rounds):
    """Peak RSS growth (MiB) of one call of each step, the larger of `rounds` interleaved rounds."""
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(_M_MMAP_THRESHOLD, 64 * 1024)  # a fixed threshold: big buffers are unmapped on free
    libc.mallopt(_M_TRIM_THRESHOLD, 0)
    for step in steps:  # one step each under these settings before measuring
        step()
    peaks = [0.0] * len(steps)
    for _ in range(rounds):
        for i, step in enumerate(steps):
            libc.malloc_trim(0)
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # VmHWM := VmRSS
            before = _status_kib("VmRSS")
            step()
            peaks[i] = max(peaks[i], (_status_kib("VmHWM") - before) / 1024)
    return peaks


def _worker(spec):
    """Phase "time": the median step times; phase "memory": each step's peak RSS growth."""
    threads = spec["threads"]
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    import keras

    from approxtrain import models
    from approxtrain.bench import interleaved_medians

    rng = np.random.default_rng(0)
    shape, batch = tuple(spec["input_shape"]), spec["batch"]
    x = tf.constant(rng.uniform(0, 1, (batch, *shape)).astype(np.float32))
    y = tf.constant(rng.integers(0, NUM_CLASSES, batch).astype(np.int32))
    variants = ("fp32", *spec["multipliers"])
    steps = []
    for variant in variants:
        keras.utils.set_random_seed(0)  # the same initial weights for all
        model = models.build(spec["model"], shape, NUM_CLASSES, multiplier=variant)
        steps.append(_train_step(model, x, y))
    out = {
        "cpu_gemm_paths": {v: _gemm_path(v) for v in spec["multipliers"]},
        "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count(),
    }
    if spec["phase"] == "time":
        out["times_s"] = dict(zip(variants, interleaved_medians(steps, spec["repeats"], warmup=spec["warmup"])))
    else:
        out["peak_mib"] = dict(zip(variants, _step_peak_mib(steps, spec["memory_rounds"])))
    return out


def _gemm_path(name):
    """The CPU GEMM path a multiplier's 1024^3 GEMM takes here (tables differ: bf16 and drum*
    run as float GEMMs, docs/cpu-kernels.md)."""
    from approxtrain import _core, multipliers

    m = multipliers.get(name)
    if m.kind == "integer":
        return _core.int_gemm_cpu_path(1024, 1024, 1024)
    return _core.gemm_cpu_path(m.mantissa_bits, m.lut)


# --- the section ---------------------------------------------------------------------------


def _worker_env(path, threads):
    env = dict(os.environ)
    if path and path != "auto":
        env[PATH_ENV] = path
    elif path == "auto":
        env.pop(PATH_ENV, None)
    if threads:
        env["APPROXTRAIN_NUM_THREADS"] = env["OMP_NUM_THREADS"] = str(threads)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def _run_worker(spec, env):
    proc = subprocess.run(
        [sys.executable, "-m", "approxtrain.bench.zoo", "--worker", json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"zoo bench worker for {spec['model']} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    return json.loads(lines[-1])


def _table_line(model, batch, times, ratios, mibs, path):
    """One line of the section's table: the header's labels or a row's formatted figures."""
    return f"  {model:<12} {batch:>5} " + " ".join(f"{c:>9}" for c in (*times, *ratios, *mibs)) + f"  {path}"


def run(args):
    quick = bool(getattr(args, "quick", False))
    names = getattr(args, "models", None) or (QUICK_MODELS if quick else [m for m, _, _ in MODELS])
    batches = getattr(args, "sizes", None)
    repeats = getattr(args, "repeats", None) or (1 if quick else 5)
    threads = getattr(args, "threads", None)
    path = getattr(args, "path", None) or os.environ.get(PATH_ENV) or "auto"
    env = _worker_env(path, threads)
    multipliers = getattr(args, "zoo_multipliers", None) or DEFAULT_MULTIPLIERS
    variants = ("fp32", *multipliers)
    load = os.getloadavg()[0]
    print(
        f"[zoo] training step (SGD, batch as shown), {' and '.join(multipliers)} AM vs fp32 Keras, median of "
        f"{repeats} interleaved repeats, CPU path {path}, load average {load:.1f} at start"
    )
    print(
        _table_line(
            "model",
            "batch",
            [f"{v} ms" for v in variants],
            [f"{v}/fp32" for v in multipliers],
            [f"{v} MiB" for v in variants],
            "gemm path per multiplier",
        )
    )
    rows = []
    for name, shape, default_batch in MODELS:
        if name not in names:
            continue
        for batch in batches or [QUICK_BATCH if quick else default_batch]:
            spec = {
                "model": name,
                "input_shape": list(shape),
                "batch": int(batch),
                "repeats": repeats,
                "warmup": 1 if quick else 2,
                "threads": threads,
                "memory_rounds": 1 if quick else MEMORY_ROUNDS,
                "multipliers": list(multipliers),
            }
            out = _run_worker({**spec, "phase": "time"}, env)
            mem = _run_worker({**spec, "phase": "memory"}, {**env, **MEMORY_ENV})["peak_mib"]
            t = out["times_s"]
            row = {
                "section": "zoo",
                "model": name,
                "input": "x".join(map(str, shape)),
                "batch": int(batch),
                "cpu_path": path,
                "cpu_gemm_paths": out["cpu_gemm_paths"],
                "threads": out["tf_intra_op_threads"],
                "repeats": repeats,
                **{f"{v}_ms": t[v] * 1e3 for v in variants},
                **{f"{v}_over_fp32": t[v] / t["fp32"] for v in multipliers},
                **{f"{v}_peak_mib": mem[v] for v in variants},
                **{f"{v}_peak_over_fp32": mem[v] / mem["fp32"] if mem["fp32"] > 0 else None for v in multipliers},
                "load_average": load,
            }
            rows.append(row)
            print(
                _table_line(
                    name,
                    batch,
                    [f"{row[v + '_ms']:.1f}" for v in variants],
                    [f"{row[v + '_over_fp32']:.2f}" for v in multipliers],
                    [f"{mem[v]:.1f}" for v in variants],
                    ", ".join(f"{v} {p}" for v, p in row["cpu_gemm_paths"].items()),
                ),
                flush=True,
            )
    return rows


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "--worker":
        sys.exit("usage: python -m approxtrain.bench.zoo --worker SPEC_JSON (run by `approxtrain bench --section zoo`)")
    print(json.dumps(_worker(json.loads(sys.argv[2]))), flush=True)
