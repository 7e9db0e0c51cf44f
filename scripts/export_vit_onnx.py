#!/usr/bin/python3
"""Exports a dense pare vit model (Hugging Face ViTForImageClassification layout) to ONNX.

Usage (from the repository root):
    /usr/bin/python3 scripts/export_vit_onnx.py --model models/vit-fmnist --out build/vit.onnx \
        [--check DUMP.safetensors]

The forward is tests/fixtures/make_fixtures.py's vit_forward, the independent reference (written
as HF's modeling code computes it) that pare's ViT forward is tested against, run here in float32:
that function casts every weight with `.to(torch.float64)`, and the weights are handed to it
wrapped so that the cast keeps them float32 (the images are not cast), so the graph is float32
throughout. Weights from model.safetensors (read_safetensors of scripts/lm_speed.py).
torch.onnx.export in eval mode, opset OPSET (17, the newest torch 1.13 writes), input "images"
[batch, C, H, W] float32 (normalised as pare feeds its forward), output "logits" [batch, labels];
the batch axis is dynamic. With --check, the PyTorch module's logits on the dump's "images" (written
by `pare bench vit-speed --dump`) must equal the dump's "logits" (pare's) within
rel. 1e-4 of their largest magnitude; it prints the max |difference|.

Debian's python3-torch (1.13) at /usr/bin/python3; the onnx Python package is not needed.
"""

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures"))
import make_fixtures as ref  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lm_speed import read_safetensors  # noqa: E402

OPSET = 17


class _KeepDtype:
    """A weight whose .to(dtype) is itself: vit_forward's float64 cast leaves it float32."""

    def __init__(self, t):
        self.t = t

    def to(self, dtype):
        return self.t


class Vit(torch.nn.Module):
    """make_fixtures.vit_forward with a pare vit model's config and float32 weights."""

    def __init__(self, model_dir):
        super().__init__()
        c = json.load(open(os.path.join(model_dir, "config.json")))
        p = c.get("pare", {})
        if p.get("family", "vit") != "vit" or c.get("model_type") != "vit":
            sys.exit(f"export_vit_onnx.py: {model_dir} is not a vit model")
        dense = (not p.get("shortcuts") and not p.get("token_pruning") and not p.get("quantization")
                 and p.get("norm", "layernorm") == "layernorm"
                 and all(l.get("heads") == c["num_attention_heads"]
                         and l.get("intermediate_size") == c["intermediate_size"]
                         and l.get("attn_in") == c["hidden_size"] for l in p.get("layers", [])))
        if not dense:
            sys.exit(f"export_vit_onnx.py: {model_dir} is compressed (sliced, pruned or quantized); "
                     "the reference forward is the dense HF ViT")
        self.cfg = {k: c[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                      "intermediate_size", "num_labels", "layer_norm_eps",
                                      "image_size", "patch_size", "num_channels")}
        W = read_safetensors(os.path.join(model_dir, "model.safetensors"))  # floats as float32
        self.names = sorted(W)  # buffers w0, w1, ... (buffer names cannot hold dots)
        for i, k in enumerate(self.names):
            self.register_buffer(f"w{i}", W[k])

    def weights(self):
        return {k: getattr(self, f"w{i}") for i, k in enumerate(self.names)}

    def forward(self, images):
        ref.CFG = self.cfg  # vit_forward reads its shapes from this module global
        return ref.vit_forward({k: _KeepDtype(v) for k, v in self.weights().items()}, images)

    def reference64(self, images):
        """vit_forward as written (float64 throughout), for the record."""
        ref.CFG = self.cfg
        return ref.vit_forward(self.weights(), images.to(torch.float64))


def export(model, path, example):
    torch.onnx.export(model.eval(), (example,), path, opset_version=OPSET, input_names=["images"],
                      output_names=["logits"], dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                      do_constant_folding=True)


def check(model, dump):
    """Max |PyTorch − pare| logits on the dumped batch; exits when above rel. 1e-4."""
    d = read_safetensors(dump)
    with torch.no_grad():
        got = model(d["images"])
    diff = (got - d["logits"]).abs().max().item()
    scale = d["logits"].abs().max().item()
    if not diff <= 1e-4 * max(1.0, scale):
        sys.exit(f"export_vit_onnx.py: PyTorch logits differ from pare's by {diff} (scale {scale})")
    return diff, d


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--model", default="models/vit-fmnist")
    a.add_argument("--out", required=True, help="the .onnx file to write")
    a.add_argument("--check", help="safetensors dump of `pare bench vit-speed --dump`")
    a = a.parse_args()
    model = Vit(a.model).eval()
    c = model.cfg
    example = torch.zeros(2, c["num_channels"], c["image_size"], c["image_size"])
    export(model, a.out, example)
    print(f"wrote {a.out} (opset {OPSET})")
    if a.check:
        diff, _ = check(model, a.check)
        print(f"max |PyTorch - pare| logits: {diff:.3g}")


if __name__ == "__main__":
    main()
