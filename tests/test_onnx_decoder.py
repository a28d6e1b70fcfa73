"""The VAE decoder's backends: ONNX Runtime (the [onnx] extra) agrees with torch, and the choice is explicit."""

from __future__ import annotations

import pytest
import torch

from meg_gym.generation import embedded
from meg_gym.generation import onnx_decoder as backends
from meg_gym.generation.imaging import decode_latents, prepare_vae


def test_backend_choice_follows_the_environment_variable(monkeypatch):
    monkeypatch.setenv("MEG_GYM_DECODER", "torch")
    assert backends.decoder_backend("cpu") == "torch"
    monkeypatch.setenv("MEG_GYM_DECODER", "auto")
    assert backends.decoder_backend("cpu") == ("onnxruntime" if backends.onnxruntime_installed() else "torch")
    assert backends.decoder_backend("meta") == "torch"  # ONNX Runtime only stands in for torch on the CPU
    monkeypatch.setenv("MEG_GYM_DECODER", "tensorrt")
    with pytest.raises(ValueError, match="MEG_GYM_DECODER='tensorrt'.*'auto', 'torch', 'onnxruntime'"):
        backends.decoder_backend("cpu")
    monkeypatch.setenv("MEG_GYM_DECODER", "onnxruntime")
    with pytest.raises(ValueError, match="on the CPU"):
        backends.decoder_backend("meta")
    monkeypatch.setattr(backends, "onnxruntime_installed", lambda: False)
    with pytest.raises(RuntimeError, match=r"pip install \"meg-gym\[onnx\]\""):
        backends.decoder_backend("cpu")


def test_onnxruntime_decodes_what_torch_decodes(monkeypatch):
    pytest.importorskip("onnxruntime", reason='the [onnx] extra (pip install "meg-gym[onnx]") is not installed')
    vae = prepare_vae(embedded.load_autoencoder())
    latents = torch.randn(19, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 2
    images = {}
    for backend in ("torch", "onnxruntime"):
        monkeypatch.setenv("MEG_GYM_DECODER", backend)
        with torch.no_grad():
            images[backend] = decode_latents(vae, latents, batch_size=8)  # batches of 8, 8 and 3
    assert images["onnxruntime"].shape == images["torch"].shape == (19, 3, 64, 64)
    assert images["onnxruntime"].dtype == torch.float32
    assert float(images["onnxruntime"].abs().max()) <= 1.0
    assert torch.allclose(images["onnxruntime"], images["torch"], atol=1e-4)
    assert backends.onnx_decoder_for(vae) is backends.onnx_decoder_for(vae)  # exported once per VAE
