"""Where the `onnx:` backbone's features differ from torch's (issue 31: "the same features to 1e-5"): the packaged
EfficientNet-Lite0 at 64 px, its pooled features, on the same float32 pixels (the image demo's first 128 test images,
prepared once by the torch backbone: the sidecar's own preprocessing is checked in bench/onnx_backbone.py), computed

- by torch in float64 (the model and pixels cast to double): the reference every other row is measured against;
- by torch in float32 at 1 and 2 threads, with oneDNN off (torch's own convolution kernels), and with every BatchNorm
  folded into its convolution (what the exporter's eval-mode graph does);
- by ONNX Runtime (CPU) on exports with and without constant folding / at two opsets, at each graph optimisation
  level (DISABLE_ALL, BASIC, EXTENDED, ALL: ALL adds the NCHWc layout and its convolution kernels) and 1 or 2 threads.

Each row: the largest absolute difference from the float64 reference, from torch float32 (2 threads) and from torch
float32 with the BatchNorms folded. (A float64 ONNX graph would separate the graph from the rounding, but ONNX Runtime's
CPU provider has no float64 Conv: NOT_IMPLEMENTED.)

  python -m bench.onnx_precision        # writes bench/out/onnx_precision.json and prints the table"""

from __future__ import annotations

import copy
import io
import json
import sys
import time
import warnings

import numpy as np
import torch

from bench.common import OUT, REPO, save
from bench.onnx_backbone import _Pooled

SIZE = 64


def _fold_batchnorms(module: torch.nn.Module) -> tuple[torch.nn.Module, int]:
    """A copy with each BatchNorm2d folded, in float32, into the Conv2d sibling registered just before it (torch's own
    fuse_conv_bn_weights; EfficientNet-Lite keeps them as named siblings, `_expand_conv` then `_bn0`, ...), the
    BatchNorm replaced by Identity: what the exporter's eval-mode graph does."""
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    module = copy.deepcopy(module)
    folded = 0
    for parent in list(module.modules()):
        conv = None
        for name, child in list(parent._modules.items()):
            if isinstance(child, torch.nn.Conv2d):
                conv = child
            elif isinstance(child, torch.nn.BatchNorm2d) and conv is not None:
                conv.weight, conv.bias = fuse_conv_bn_weights(conv.weight, conv.bias, child.running_mean, child.running_var,
                                                              child.eps, child.weight, child.bias)
                parent._modules[name] = torch.nn.Identity()
                conv, folded = None, folded + 1
    return module, folded


def _torch(model: torch.nn.Module, x: torch.Tensor, threads: int, onednn: bool = True) -> np.ndarray:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode(), torch.backends.mkldnn.flags(enabled=onednn):
            return torch.cat([model(x[i:i + 32]) for i in range(0, len(x), 32)]).double().numpy()
    finally:
        torch.set_num_threads(before)


def _export(model: torch.nn.Module, opset: int, folding: bool) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, SIZE, SIZE),), buf, input_names=["images"], output_names=["features"],
                          dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}}, opset_version=opset,
                          do_constant_folding=folding, dynamo=False)
    return buf.getvalue()


def _ort(blob: bytes, x: np.ndarray, level: str, threads: int) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(blob, opts, providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, {"images": x[i:i + 32]})[0] for i in range(0, len(x), 32)]).astype(np.float64)


def _graph_ops(blob: bytes) -> dict[str, int]:
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load_from_string(blob).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def main() -> None:
    import onnxruntime as ort

    from tlops.backbones import load_backbone
    from tlops.data import load_dataset

    bb = load_backbone("packaged:efficientnet-lite0", image_size=SIZE)
    paths = load_dataset(REPO / "data" / "image_fashion_mnist").inputs("test")[:128]
    x32 = bb.collate(paths).float()
    model = _Pooled(bb.model).eval()
    t0 = time.perf_counter()
    ref = _torch(copy.deepcopy(model).double(), x32.double(), 2)
    res: dict = {"images": len(paths), "feature_scale": float(np.abs(ref).max()), "torch": torch.__version__, "onnxruntime": ort.__version__,
                 "rows": []}
    t32 = _torch(model, x32, 2)
    folded, n = _fold_batchnorms(model)
    res["batchnorms_folded"] = n
    t32f = _torch(folded, x32, 2)

    def row(name: str, got: np.ndarray) -> None:
        res["rows"].append({"what": name, "vs_float64": float(np.abs(got - ref).max()), "vs_torch32": float(np.abs(got - t32).max()),
                            "vs_torch32_folded": float(np.abs(got - t32f).max()), "mean_vs_float64": float(np.abs(got - ref).mean())})
        print(f"{name:60s} {res['rows'][-1]['vs_float64']:.2e} {res['rows'][-1]['vs_torch32']:.2e}", flush=True)

    row("torch float32, 2 threads", t32)
    row("torch float32, 1 thread", _torch(model, x32, 1))
    row("torch float32, oneDNN off (torch's own conv kernels), 2 threads", _torch(model, x32, 2, onednn=False))
    row(f"torch float32, {n} BatchNorms folded into their convs, 2 threads", t32f)
    row("torch float32, BatchNorms folded, oneDNN off, 2 threads", _torch(folded, x32, 2, onednn=False))
    xn = x32.numpy()
    for opset, folding in ((17, True), (17, False), (13, True)):
        blob = _export(model, opset, folding)
        res.setdefault("graphs", {})[f"opset {opset}, constant folding {folding}"] = _graph_ops(blob)
        for level in ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL"):
            for threads in ((1, 2) if (opset, folding) == (17, True) and level in ("ORT_DISABLE_ALL", "ORT_ENABLE_ALL") else (2,)):
                row(f"onnxruntime opset {opset} folding {'on' if folding else 'off'} {level} {threads} thr", _ort(blob, xn, level, threads))
        save("onnx_precision", res)
    res["seconds"] = time.perf_counter() - t0
    save("onnx_precision", res)
    report(res)


def report(r: dict) -> None:
    print(f"\nEfficientNet-Lite0 pooled features at {SIZE} px, {r['images']} images (features up to {r['feature_scale']:.2f}); "
          f"torch {r['torch']}, onnxruntime {r['onnxruntime']}\n")
    print("| computed by | max abs diff vs torch float64 | mean abs diff vs float64 | max abs diff vs torch float32 | vs torch float32, "
          "BatchNorms folded |")
    print("|---|---:|---:|---:|---:|")
    for row in r["rows"]:
        print(f"| {row['what']} | {row['vs_float64']:.2e} | {row['mean_vs_float64']:.1e} | {row['vs_torch32']:.2e} | "
              f"{row['vs_torch32_folded']:.2e} |")
    for name, ops in r.get("graphs", {}).items():
        print(f"\n{name}: " + ", ".join(f"{k} {v}" for k, v in sorted(ops.items(), key=lambda kv: -kv[1])))


if __name__ == "__main__":
    if "--report" in sys.argv:
        report(json.loads((OUT / "onnx_precision.json").read_text()))
    else:
        main()
