"""Seed codec and reference schemes: layout, power normalisation, symbol counts, channel behaviour."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from meg_gym import codec
from meg_gym.cache import LatentCache
from meg_gym.channel import simulate_mmse_torch


def test_block_interleaving_round_trips_and_spreads_symbols():
    x = np.arange(2 * 32).reshape(2, 32)
    blocks = codec.to_blocks(x, 8)
    assert blocks.shape == (2, 8, 4)
    assert list(blocks[0, 1]) == [1, 9, 17, 25]  # symbol i goes to block i % K
    assert np.array_equal(codec.from_blocks(blocks), x)
    t = torch.arange(32.0).view(1, 32)
    assert torch.equal(codec.from_blocks(codec.to_blocks(t, 4)), t)
    with pytest.raises(ValueError, match="choose num_blocks from"):
        codec.to_blocks(x, 5)


@pytest.mark.parametrize("ratio, symbols", [("1/2", 64), ("1/4", 32), ("1/8", 16), ("1/16", 8)])
def test_shipped_codecs_have_the_advertised_symbol_counts(ratio, symbols):
    model = codec.load_codec(ratio)
    assert model.num_symbols == symbols
    assert model.compression_ratio == Fraction(ratio)
    assert codec.RawLatent((4, 8, 8)).num_symbols == 128
    assert symbols == 128 * Fraction(ratio)


def test_seed_has_unit_average_power_and_decodes_to_a_latent():
    model = codec.load_codec()
    latents = torch.randn(5, 4, 8, 8)
    symbols, side = model.encode(latents)
    assert symbols.dtype == torch.complex64 and symbols.shape == (5, 32)
    torch.testing.assert_close(symbols.abs().pow(2).mean(1), torch.ones(5), rtol=1e-5, atol=1e-5)
    assert torch.equal(side, torch.ones(5))
    out = model.decode(symbols, torch.ones(5, 32))
    assert out.shape == latents.shape


def test_parse_ratio_accepts_forms_and_rejects_others():
    assert codec.parse_ratio(0.25) == codec.parse_ratio("1/4") == codec.parse_ratio(Fraction(1, 4))
    for bad in (0.3, "a quarter", 1, None):
        with pytest.raises(ValueError, match="compression ratio must be one of"):
            codec.parse_ratio(bad)


def test_missing_codec_names_the_training_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_codec.py"):
        codec.load_codec(folder=tmp_path)


def test_raw_latent_is_exact_without_noise_and_mmse_shrinks_with_noise():
    raw = codec.RawLatent((4, 8, 8))
    z = torch.randn(3, 4, 8, 8) * 2 + 0.5
    symbols, scale = raw.encode(z)
    torch.testing.assert_close(symbols.abs().pow(2).mean(1), torch.ones(3), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(raw.decode(symbols, torch.ones(3, 128), scale), z, rtol=1e-5, atol=1e-5)
    gen = torch.Generator().manual_seed(0)
    received, rel = simulate_mmse_torch(symbols, torch.tensor(1.0), gen)  # 0 dB
    torch.testing.assert_close(rel, torch.full((3, 128), 0.5))
    # MMSE error per symbol is 1 / (1 + snr) = 0.5 at 0 dB
    err = (received - symbols).abs().pow(2).mean().item()
    assert 0.4 < err < 0.6


def test_lmmse_raw_latent_knows_the_prior_and_beats_the_zero_mean_receiver():
    gen = torch.Generator().manual_seed(2)
    mean, std = torch.randn(4, 8, 8) * 1.5, torch.rand(4, 8, 8) + 0.2
    z = mean + std * torch.randn(4000, 4, 8, 8, generator=gen)
    lmmse, zero_mean = codec.RawLatent((4, 8, 8), prior=(mean, std**2)), codec.RawLatent((4, 8, 8))
    symbols, scale = lmmse.encode(z)
    # noiseless: exact; nothing received (reliability 0): the prior mean
    torch.testing.assert_close(lmmse.decode(symbols, torch.ones(4000, 128), scale), z, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(lmmse.decode(symbols * 0, torch.zeros(4000, 128), scale), mean.expand_as(z))
    for snr in (0.1, 1.0, 10.0):
        received, rel = simulate_mmse_torch(symbols, torch.tensor(snr), gen)
        errors = [(scheme.decode(received, rel, scale) - z).pow(2).mean().item() for scheme in (lmmse, zero_mean)]
        assert errors[0] < errors[1], (snr, errors)
        # the LMMSE error per value: var * v / (var + v), v = 1 / (2 snr c^2), averaged over values and latents
        v = 1 / (2 * snr * scale[:, None, None, None] ** 2)
        expected = (std**2 * v / (std**2 + v)).mean().item()
        assert abs(errors[0] - expected) < 0.05 * expected, (snr, errors[0], expected)


def test_the_shipped_latent_prior_is_estimated_on_the_train_prompts():
    from meg_gym.latent_prior import estimate_prior, latent_prior

    cache = LatentCache.load()
    prior = estimate_prior(cache)
    for i, step in enumerate(cache.split_steps):
        mean, var = latent_prior(None, step)
        torch.testing.assert_close(mean, prior["mean"][i], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(var, prior["var"][i], rtol=1e-5, atol=1e-6)
    train = cache.es_latents[cache.indices("train"), -1].float()
    torch.testing.assert_close(prior["mean"][-1], train.mean(0), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(prior["mean"][-1], cache.es_latents[cache.indices("test"), -1].float().mean(0), atol=1e-4)


def test_a_prior_asset_is_used_only_for_the_cache_it_was_estimated_on(tmp_path, monkeypatch):
    import json

    from meg_gym import latent_prior as lp

    cache = LatentCache.load()
    zeros = {k: torch.zeros_like(v) for k, v in lp.estimate_prior(cache).items()}
    folder = lp.save_prior(tmp_path, cache, zeros)
    monkeypatch.setattr(lp, "PRIOR_DIR", folder)
    lp._prior_of.cache_clear()
    try:
        assert torch.count_nonzero(lp.latent_prior(None, cache.split_steps[-1])[0]) == 0  # the asset
        meta = json.loads((folder / lp.JSON_NAME).read_text())
        (folder / lp.JSON_NAME).write_text(json.dumps({**meta, "cache_sha256": "0" * 64}))  # another cache's asset
        lp._prior_of.cache_clear()
        assert torch.count_nonzero(lp.latent_prior(None, cache.split_steps[-1])[0]) > 0  # estimated instead
    finally:
        lp._prior_of.cache_clear()


def test_simulate_channel_matches_the_numpy_channel_statistics():
    from meg_gym import channel

    gen = torch.Generator().manual_seed(1)
    s = torch.complex(torch.randn(2000, 64), torch.randn(2000, 64)) * 0.7071
    est, _ = simulate_mmse_torch(s, torch.tensor(10.0), gen)
    mse = (est - s).abs().pow(2).mean().item()
    assert abs(mse - channel.mmse_mse(10.0)) < 0.005


def test_trained_codec_beats_the_raw_latent_at_low_snr():
    cache = LatentCache.load()
    z = cache.clean_latents(cache.indices("test")[:200])
    gen = torch.Generator().manual_seed(0)
    errors = {}
    for name, scheme in (("seed", codec.load_codec()), ("raw", codec.RawLatent((4, 8, 8)))):
        with torch.no_grad():
            symbols, side = scheme.encode(z)
            received, rel = simulate_mmse_torch(symbols, torch.tensor(0.1), gen)  # -10 dB
            errors[name] = (scheme.decode(received, rel, side) - z).pow(2).mean().item()
    assert errors["seed"] < errors["raw"]


def test_centralised_analogue_and_digital():
    images = torch.rand(4, 3, 16, 16) * 2 - 1
    gen = torch.Generator().manual_seed(0)
    clean = codec.centralised_analogue(images, np.full(4, 1e6), gen)
    torch.testing.assert_close(clean, images, atol=1e-2, rtol=0)
    noisy = codec.centralised_analogue(images, np.full((4, 2), 1.0), gen)
    assert (noisy - images).pow(2).mean() > (clean - images).pow(2).mean()
    snr = np.array([[100.0, 100.0], [0.0, 0.0], [1000.0, 0.0], [3.0, 3.0]])
    received, outage = codec.centralised_digital(images, snr, rate=2.0)
    # mean capacity: 6.66, 0, 4.98, 2.0 bits/symbol against the rate of 2
    assert outage.tolist() == [False, True, False, False]
    assert torch.all(received[1] == 0)
    assert (received[0] - images[0]).abs().max() <= 1 / 127.5  # 8-bit quantisation only
    assert codec.digital_symbols(98304, 3.0) == 32768
    u8 = np.zeros((2, 64, 64, 3), dtype=np.uint8)
    assert codec.image_bits(u8).tolist() == [98304, 98304]
    assert codec.image_bits(u8, compress=True)[0] < 98304 // 10  # a flat image compresses well
