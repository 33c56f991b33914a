"""AM kernels on the GPU against cuBLAS / cuDNN in FP32 (TF32 off).

One run on a GPU machine, no TensorFlow:

    python benchmarks/cuda_bench.py --out gpu-out/cuda_bench.json

Times are device times (CUDA events) of the kernels alone, medians over
--repeats launches after a warm-up; inputs are copied to the device once
(approxtrain._core.*_cuda_bench).  The FP32 baselines run through PyTorch
(torch.backends.{cuda.matmul,cudnn}.allow_tf32 = False) or, without PyTorch,
CuPy (its matmul does not use TF32 unless CUPY_TF32=1).  "TFLOP/s" counts
2 flops per multiply-add for both, so the AM figure is "FP32-equivalent".
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from approxtrain import _core, core  # noqa: E402
from approxtrain.multipliers import Multiplier  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import amsim_reference as ref  # noqa: E402

# ResNet-18/50 and MobileNetV2 layers, NHWC: (name, N, H, W, C, KH, KW, O, stride, padding, groups)
CONV_LAYERS = [
    ("resnet18.conv1 7x7/2", 32, 224, 224, 3, 7, 7, 64, 2, 3, 1),
    ("resnet18.layer1 3x3", 32, 56, 56, 64, 3, 3, 64, 1, 1, 1),
    ("resnet18.layer3 3x3", 32, 14, 14, 256, 3, 3, 256, 1, 1, 1),
    ("resnet50.layer1 1x1 256->64", 32, 56, 56, 256, 1, 1, 64, 1, 0, 1),
    ("resnet50.layer3 1x1 1024->256", 32, 14, 14, 1024, 1, 1, 256, 1, 0, 1),
    ("resnet50.layer4 3x3", 32, 7, 7, 512, 3, 3, 512, 1, 1, 1),
    ("mobilenetv2 depthwise 3x3 144", 32, 56, 56, 144, 3, 3, 144, 1, 1, 144),
    ("mobilenetv2 depthwise 3x3/2 96", 32, 112, 112, 96, 3, 3, 96, 2, 1, 96),
]
# Layers whose gradients are timed too.
GRAD_LAYERS = {"resnet18.layer1 3x3", "resnet50.layer3 1x1 1024->256", "mobilenetv2 depthwise 3x3 144"}


class Baseline:
    """FP32 GEMM / conv through PyTorch (preferred) or CuPy, timed with CUDA events."""

    def __init__(self):
        self.name = None
        try:
            import torch

            if torch.cuda.is_available():
                torch.backends.cuda.matmul.allow_tf32 = False
                torch.backends.cudnn.allow_tf32 = False
                torch.backends.cudnn.benchmark = True
                self.torch, self.name = torch, f"torch {torch.__version__} (cuBLAS/cuDNN, TF32 off)"
                return
        except ImportError:
            pass
        try:
            import cupy

            self.cupy, self.name = cupy, f"cupy {cupy.__version__} (cuBLAS, TF32 off)"
        except ImportError:
            pass

    def _time(self, fn, repeats, start_event, stop_event, sync):
        fn()
        sync()
        times = []
        for _ in range(repeats):
            start, stop = start_event(), stop_event()
            start.record()
            fn()
            stop.record()
            stop.synchronize()
            times.append(self._elapsed(start, stop))
        return statistics.median(times)

    def gemm_ms(self, a, b, repeats):
        if self.name is None:
            return None
        if hasattr(self, "torch"):
            t = self.torch
            da, db = t.from_numpy(a).cuda(), t.from_numpy(b).cuda()
            self._elapsed = lambda s, e: s.elapsed_time(e)
            ev = lambda: t.cuda.Event(enable_timing=True)  # noqa: E731
            return self._time(lambda: t.mm(da, db), repeats, ev, ev, t.cuda.synchronize)
        cp = self.cupy
        da, db = cp.asarray(a), cp.asarray(b)
        self._elapsed = lambda s, e: cp.cuda.get_elapsed_time(s, e)
        ev = cp.cuda.Event
        return self._time(lambda: cp.matmul(da, db), repeats, ev, ev, cp.cuda.Device().synchronize)

    def conv_ms(self, op, x, w, dy, stride, padding, groups, repeats):
        """cuDNN conv (op: forward | input_grad | filter_grad), best of NCHW and channels_last."""
        if not hasattr(self, "torch"):
            return None
        t = self.torch
        functional, grad = t.nn.functional, t.nn.grad
        xt = t.from_numpy(x).cuda().permute(0, 3, 1, 2)  # NHWC -> NCHW view
        wt = t.from_numpy(w).cuda().permute(3, 2, 0, 1).contiguous()  # HWIO -> OIHW
        dyt = t.from_numpy(dy).cuda().permute(0, 3, 1, 2)
        self._elapsed = lambda s, e: s.elapsed_time(e)

        def ev():
            return t.cuda.Event(enable_timing=True)

        best = None
        for fmt in (t.contiguous_format, t.channels_last):
            xf, dyf = xt.contiguous(memory_format=fmt), dyt.contiguous(memory_format=fmt)
            options = {"stride": stride, "padding": padding, "groups": groups}
            calls = {
                "forward": lambda: functional.conv2d(xf, wt, **options),  # noqa: B023 - called in this iteration
                "input_grad": lambda: grad.conv2d_input(xf.shape, wt, dyf, **options),  # noqa: B023
                "filter_grad": lambda: grad.conv2d_weight(xf, wt.shape, dyf, **options),  # noqa: B023
            }
            fn = calls[op] if op in calls else calls["filter_grad"]
            ms = self._time(fn, repeats, ev, ev, t.cuda.synchronize)
            best = ms if best is None else min(best, ms)
        return best


def tflops(flops, ms):
    return None if not ms else flops / (ms * 1e-3) / 1e12


def ratio(am_ms, ref_ms):
    return None if not ref_ms else am_ms / ref_ms


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def bench_gemm(mul, sizes, repeats, baseline, rng):
    rows = []
    for n in sizes:
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        reps = max(3, repeats // (1 if n <= 2048 else 4))
        am = _core.matmul_cuda_bench(a[None], b[None], *mul.core_args, False, False, reps)
        base = baseline.gemm_ms(a, b, reps)
        flops = 2.0 * n**3
        row = dict(
            op="gemm",
            shape=[n, n, n],
            am_ms=am,
            fp32_ms=base,
            am_tflops=tflops(flops, am),
            fp32_tflops=tflops(flops, base),
            ratio=ratio(am, base),
            variant=_core.gemm_cuda_variant(mul.mantissa_bits, n, n, n, 1),
        )
        rows.append(row)
        print(
            f"GEMM {n:5d}^3  AM {am:9.3f} ms {fmt(row['am_tflops'], '6.2f')} TFLOP/s   FP32 "
            f"{fmt(base, '9.3f')} ms {fmt(row['fp32_tflops'], '6.2f')} TFLOP/s   AM/FP32 {fmt(row['ratio'], '5.2f')}x"
            f"   [{row['variant']}]",
            flush=True,
        )
    return rows


def bench_conv(mul, repeats, baseline, rng, quick):
    rows = []
    for name, n, h, w_, c, kh, kw, o, stride, pad, groups in CONV_LAYERS:
        if quick:
            n = max(1, n // 8)
        x = np.maximum(rng.standard_normal((n, h, w_, c), dtype=np.float32), 0)  # ReLU-like inputs
        w = rng.standard_normal((kh, kw, c // groups, o), dtype=np.float32)
        oh = (h + 2 * pad - kh) // stride + 1
        ow = (w_ + 2 * pad - kw) // stride + 1
        dy = rng.standard_normal((n, oh, ow, o), dtype=np.float32)
        flops = 2.0 * n * oh * ow * o * kh * kw * (c // groups)
        pads = [pad, pad, pad, pad]
        ops = ("forward", "input_grad", "filter_grad") if name in GRAD_LAYERS else ("forward",)
        for op in ops:
            if op == "forward":
                am = _core.conv2d_cuda_bench(x, w, *mul.core_args, [stride] * 2, [1, 1], pads, groups, repeats)
            elif op == "input_grad":
                am = _core.conv2d_input_grad_cuda_bench(
                    list(x.shape), w, dy, *mul.core_args, [stride] * 2, [1, 1], pads, groups, repeats
                )
            else:
                am = _core.conv2d_filter_grad_cuda_bench(
                    x, list(w.shape), dy, *mul.core_args, [stride] * 2, [1, 1], pads, groups, max(1, repeats // 4)
                )
            base = baseline.conv_ms(op, x, w, dy, stride, pad, groups, repeats)
            row = dict(
                op=f"conv2d_{op}",
                layer=name,
                nhwc=[n, h, w_, c],
                filter=[kh, kw, c // groups, o],
                stride=stride,
                padding=pad,
                groups=groups,
                am_ms=am,
                fp32_ms=base,
                am_tflops=tflops(flops, am),
                fp32_tflops=tflops(flops, base),
                ratio=ratio(am, base),
            )
            rows.append(row)
            print(
                f"{name:32s} {op:11s} AM {am:9.3f} ms {fmt(row['am_tflops'], '6.2f')} TFLOP/s   cuDNN "
                f"{fmt(base, '9.3f')} ms {fmt(row['fp32_tflops'], '6.2f')} TFLOP/s   AM/cuDNN "
                f"{fmt(row['ratio'], '5.2f')}x",
                flush=True,
            )
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", help="write the results as JSON here")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--sizes", default="1024,2048,4096,8192", help="square GEMM sizes")
    p.add_argument("--mantissa-bits", type=int, default=7, help="M of the exact-product table timed (7 = bf16)")
    p.add_argument("--rounding", default="nearest", choices=["truncate", "nearest"])
    p.add_argument("--quick", action="store_true", help="batch 1/8 of the conv layers")
    p.add_argument("--skip-conv", action="store_true")
    args = p.parse_args(argv)

    if not core.cuda_available():
        print("no usable CUDA device: nothing to benchmark", file=sys.stderr)
        return 2
    m = args.mantissa_bits
    mul = Multiplier(f"exact{m}", m, args.rounding, ref.exact_table(m))
    baseline = Baseline()
    device = _core.cuda_device()
    print(
        f"device: {device}\nbaseline: {baseline.name}\nmultiplier: M={m} {args.rounding} (exact-product table)",
        flush=True,
    )
    rng = np.random.default_rng(0)
    started = time.time()
    rows = bench_gemm(mul, [int(s) for s in args.sizes.split(",") if s], args.repeats, baseline, rng)
    if not args.skip_conv:
        rows += bench_conv(mul, args.repeats, baseline, rng, args.quick)
    result = dict(
        device=device,
        baseline=baseline.name,
        mantissa_bits=m,
        rounding=args.rounding,
        repeats=args.repeats,
        build=dict(_core.build_info),
        seconds=time.time() - started,
        rows=rows,
    )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
