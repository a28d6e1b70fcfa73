"""The VAE decoder on ONNX Runtime, where it is faster than torch (optional extra: ``pip install "meg-gym[onnx]"``).

Every image the environments score goes through the VAE decoder (:func:`meg_gym.generation.imaging.decode_latents`).
On CPUs ONNX Runtime runs the embedded decoder about 1.4x as fast as torch (1.37x on the 2-core machine of
docs/results/benchmarks_split_control.md, where ``scripts/benchmark.py --split-control-only`` times both) and agrees with it
to about 7e-6 per pixel (rewards to about 2e-5 dB). So when the extra is
installed and the decoder runs on the CPU, the decoder is exported to ONNX once per process (in memory, about a
second; no file is written) and run by ONNX Runtime with torch's thread count. On other devices torch runs it.

The environment variable ``MEG_GYM_DECODER`` overrides the choice: ``auto`` (the default, as above), ``torch``, or
``onnxruntime`` (an error if it is not installed). It is an execution detail, like a BLAS: results agree to float
rounding, so it is not part of any environment's config.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import os
import warnings
import weakref

import numpy as np
import torch

__all__ = [
    "DECODER_BACKENDS",
    "DECODER_ENV_VAR",
    "OnnxDecoder",
    "decoder_backend",
    "onnx_decoder_for",
    "onnxruntime_installed",
]

DECODER_BACKENDS = ("auto", "torch", "onnxruntime")
DECODER_ENV_VAR = "MEG_GYM_DECODER"
_decoders: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # one exported decoder per VAE object


@functools.cache
def onnxruntime_installed() -> bool:
    """Whether the ``[onnx]`` extra (onnxruntime and onnx) is installed."""
    return importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None


def decoder_backend(device: torch.device | str = "cpu") -> str:
    """The backend ("torch" or "onnxruntime") decoding on ``device``: from ``MEG_GYM_DECODER`` and what is installed."""
    choice = os.environ.get(DECODER_ENV_VAR, "auto").strip().lower() or "auto"
    if choice not in DECODER_BACKENDS:
        raise ValueError(
            f"{DECODER_ENV_VAR}={choice!r} is not a decoder backend; set it to one of {list(DECODER_BACKENDS)}"
        )
    on_cpu = torch.device(device).type == "cpu"
    if choice == "onnxruntime":
        if not onnxruntime_installed():
            raise RuntimeError(
                f'{DECODER_ENV_VAR}=onnxruntime but onnxruntime (or onnx) is not installed; pip install "meg-gym[onnx]" or '
                f"set {DECODER_ENV_VAR}=auto"
            )
        if not on_cpu:
            raise ValueError(f"{DECODER_ENV_VAR}=onnxruntime runs the decoder on the CPU, but the VAE is on {device}")
        return "onnxruntime"
    return "onnxruntime" if choice == "auto" and on_cpu and onnxruntime_installed() else "torch"


class OnnxDecoder:
    """A VAE's decoder exported to ONNX (in memory) and run by ONNX Runtime on the CPU.

    Calling it on latents already divided by the VAE's scaling factor gives what ``vae.decode(z).sample`` gives.
    """

    def __init__(self, vae: torch.nn.Module, threads: int | None = None):
        import onnxruntime

        class Decode(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, z):
                return self.inner.decode(z).sample

        channels = int(vae.config.latent_channels)
        example = torch.zeros(2, channels, 8, 8, dtype=next(vae.parameters()).dtype)
        buffer = io.BytesIO()
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's notes on tracing; the graph is checked below
            torch.onnx.export(
                Decode(vae).eval(),
                (example,),
                buffer,
                dynamo=False,
                input_names=["z"],
                output_names=["image"],
                dynamic_axes={"z": {0: "batch", 2: "height", 3: "width"}, "image": {0: "batch", 2: "h", 3: "w"}},
            )
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        # ONNX Runtime's threads spin between calls by default, taking the cores from torch's UNet steps that follow
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
        with torch.no_grad():
            expected = vae.decode(example + 0.5).sample.float().numpy()
        got = self.session.run(None, {"z": (example + 0.5).numpy()})[0]
        if not np.allclose(got, expected, atol=1e-3):
            raise RuntimeError(
                f"the ONNX export of the VAE decoder disagrees with torch (max diff {np.abs(got - expected).max():.2e}); "
                f"set {DECODER_ENV_VAR}=torch"
            )

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(z.detach().cpu().float().numpy())
        return torch.from_numpy(self.session.run(None, {"z": array})[0])


def onnx_decoder_for(vae: torch.nn.Module) -> OnnxDecoder:
    """The process's ONNX decoder of ``vae`` (exported on first use)."""
    decoder = _decoders.get(vae)
    if decoder is None:
        decoder = _decoders[vae] = OnnxDecoder(vae)
    return decoder
