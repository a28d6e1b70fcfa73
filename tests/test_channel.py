"""Statistical and contract tests of meg_gym.channel: fading models, CSI, transmission, SNR, energy accounting.

Statistical checks use fixed seeds, so they are deterministic; their tolerances are several standard errors
wide so that a change of seed would not make them flaky either.
"""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats

from meg_gym import channel as ch
from meg_gym import energy, sionna_tdl
from meg_gym.channel import ChannelConfig

NUMPY_MODELS = ("rayleigh", "rician", "nakagami", "gauss-markov", "awgn")


def gains(num_envs: int, num_blocks: int, seed: int = 0, **kwargs) -> np.ndarray:
    return ch.sample_block_gains(ChannelConfig(**kwargs), num_envs, num_blocks, np.random.default_rng(seed))


# ---- import weight ---------------------------------------------------------------------------------------------


def test_import_is_light():
    code = (
        "import sys, meg_gym.channel; "
        "print(sorted(m for m in ('torch', 'sionna', 'diffusers', 'transformers', 'scipy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---- fading models ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fading", NUMPY_MODELS)
def test_shape_dtype_and_unit_mean_power(fading):
    h = gains(1000, 200, fading=fading, doppler_hz=300.0)
    assert h.shape == (1000, 200)
    assert h.dtype == np.complex128
    # 200k samples (fewer independent ones for Gauss-Markov, rho ~ 0.29 here): standard error <~ 0.003
    assert np.mean(np.abs(h) ** 2) == pytest.approx(1.0, abs=0.015)


def test_rayleigh_power_is_exponential_and_outage_matches_closed_form():
    h = gains(1000, 200, seed=1)
    mean_snr = 10.0
    snr = ch.receive_snr(mean_snr, h, 1.0)
    assert np.mean(snr) == pytest.approx(mean_snr, rel=0.01)
    n = snr.size
    for threshold in (0.3, 2.0, 10.0, 30.0):
        p = float(ch.outage_probability_rayleigh(threshold, mean_snr))
        assert p == pytest.approx(1.0 - math.exp(-threshold / mean_snr))
        empirical = float(np.mean(snr < threshold))
        assert abs(empirical - p) < 5.0 * math.sqrt(p * (1 - p) / n) + 1e-4, (threshold, empirical, p)
    # and the whole distribution: KS distance to Exp(1) on a subsample
    assert stats.kstest(np.abs(h.ravel()[:20000]) ** 2, "expon").pvalue > 0.001
    # circular symmetry: uniform phase, real and imaginary parts uncorrelated with equal power
    assert abs(np.mean(h**2)) < 0.01


def _rician_k_from_moments(h: np.ndarray) -> float:
    """Moment estimator of the Rician K factor from E|h|^2 and Var|h|^2 (Greenstein, Michelson & Erceg,
    IEEE Commun. Lett. 3(6), 1999): with nu^2 the LoS power, Ga = E|h|^2 and Gv^2 = Var|h|^2,
    nu^2 = sqrt(Ga^2 - Gv^2) and K = nu^2 / (Ga - nu^2). It needs no phase reference."""
    g = np.abs(h) ** 2
    ga, gv2 = g.mean(), g.var()
    nu2 = math.sqrt(max(ga * ga - gv2, 0.0))
    return nu2 / (ga - nu2)


@pytest.mark.parametrize("k", [1.0, 3.0, 10.0])
def test_rician_k_factor_from_moments(k):
    h = gains(1000, 200, seed=2, fading="rician", rician_k=k)
    assert np.mean(np.abs(h) ** 2) == pytest.approx(1.0, abs=0.015)
    assert _rician_k_from_moments(h) == pytest.approx(k, rel=0.05)


def test_rician_los_phase_is_random_per_episode_and_fixed_within_it():
    k = 3.0
    h = gains(2000, 400, seed=3, fading="rician", rician_k=k)
    row_means = h.mean(axis=1)  # the scattered part averages out, the LoS phasor stays
    assert np.allclose(np.abs(row_means), math.sqrt(k / (k + 1)), atol=0.12)
    phasors = row_means / np.abs(row_means)
    assert abs(np.mean(phasors)) < 0.1  # LoS phases spread uniformly over episodes
    assert stats.kstest(np.angle(phasors), "uniform", args=(-np.pi, 2 * np.pi)).pvalue > 0.001


def test_rician_with_k_zero_is_rayleigh():
    h = gains(500, 100, seed=4, fading="rician", rician_k=0.0)
    assert stats.kstest(np.abs(h.ravel()) ** 2, "expon").pvalue > 0.001


@pytest.mark.parametrize("m", [0.5, 2.0, 5.0])
def test_nakagami_m_from_moments(m):
    h = gains(1000, 200, seed=5, fading="nakagami", nakagami_m=m)
    g = np.abs(h) ** 2
    assert g.mean() == pytest.approx(1.0, abs=0.015)
    assert g.mean() ** 2 / g.var() == pytest.approx(m, rel=0.05)
    # |h|^2 ~ Gamma(m, 1/m)
    assert stats.kstest(g.ravel()[:20000], "gamma", args=(m, 0, 1 / m)).pvalue > 0.001


def test_bessel_j0_matches_scipy():
    x = np.concatenate([np.linspace(0, 3, 31), [0.0628, 5.52, 8.65, 40.0, 123.4, 1000.5], -np.linspace(0, 10, 7)])
    assert np.max(np.abs(ch.bessel_j0(x) - special.j0(x))) < 1e-12
    assert ch.bessel_j0(np.zeros((2, 3))).shape == (2, 3)


@pytest.mark.parametrize("doppler_hz", [30.0, 100.0, 300.0])
def test_gauss_markov_autocorrelation_is_jakes(doppler_hz):
    cfg = ChannelConfig(fading="gauss-markov", doppler_hz=doppler_hz, block_duration_s=1e-3)
    rho = special.j0(2 * np.pi * doppler_hz * 1e-3)
    assert cfg.gauss_markov_rho == pytest.approx(rho, abs=1e-12)
    h = ch.sample_block_gains(cfg, 4000, 50, np.random.default_rng(6))
    power = np.mean(np.abs(h) ** 2)
    lag1 = np.mean(h[:, 1:] * np.conj(h[:, :-1])) / power
    lag2 = np.mean(h[:, 2:] * np.conj(h[:, :-2])) / power
    assert lag1.real == pytest.approx(rho, abs=0.02)
    assert abs(lag1.imag) < 0.02
    assert lag2.real == pytest.approx(rho**2, abs=0.02)  # first-order autoregression
    # stationary: the first and the last block have the same power
    assert np.mean(np.abs(h[:, :5]) ** 2) == pytest.approx(1.0, abs=0.04)
    assert np.mean(np.abs(h[:, -5:]) ** 2) == pytest.approx(1.0, abs=0.04)


def test_awgn_is_exactly_one():
    h = gains(7, 5, fading="awgn")
    assert np.array_equal(h, np.ones((7, 5), dtype=np.complex128))


@pytest.mark.parametrize("fading", NUMPY_MODELS)
def test_path_loss_scales_power(fading):
    base = gains(200, 50, seed=7, fading=fading)
    lossy = gains(200, 50, seed=7, fading=fading, path_loss_db=10.0)
    # same draws, amplitude scaled by 10^(-10/20)
    np.testing.assert_allclose(lossy, base * math.sqrt(0.1), rtol=1e-12)
    assert ChannelConfig(path_loss_db=10.0).path_gain == pytest.approx(0.1)
    gain = gains(1000, 200, seed=8, fading=fading, path_loss_db=-3.0)
    assert np.mean(np.abs(gain) ** 2) == pytest.approx(10**0.3, rel=0.02)


@pytest.mark.parametrize("fading", NUMPY_MODELS)
def test_deterministic_given_seed(fading):
    a = gains(16, 12, seed=11, fading=fading)
    b = gains(16, 12, seed=11, fading=fading)
    assert np.array_equal(a, b)
    c = gains(16, 12, seed=12, fading=fading)
    if fading == "awgn":
        assert np.array_equal(a, c)  # no randomness at all
    else:
        assert not np.array_equal(a, c)


def test_invalid_counts_are_rejected():
    with pytest.raises(ValueError, match="num_blocks"):
        gains(3, 0)
    with pytest.raises(ValueError, match="num_envs"):
        gains(2.5, 3)


# ---- imperfect CSI ---------------------------------------------------------------------------------------------


def test_csi_error_variance():
    var = 0.05
    cfg = ChannelConfig(csi_error_var=var)
    h = ch.sample_block_gains(cfg, 1000, 100, np.random.default_rng(20))
    h_hat = ch.observe_gains(cfg, h, np.random.default_rng(21))
    err = h_hat - h
    assert np.mean(np.abs(err) ** 2) == pytest.approx(var, rel=0.03)
    assert abs(np.mean(err)) < 0.005
    assert abs(np.mean(err**2)) < 0.003  # circularly symmetric
    assert abs(np.mean(err * np.conj(h))) < 0.003  # independent of h


def test_perfect_csi_returns_h_exactly_and_draws_nothing():
    cfg = ChannelConfig()
    h = gains(10, 4)
    rng = np.random.default_rng(22)
    state = rng.bit_generator.state
    h_hat = ch.observe_gains(cfg, h, rng)
    assert np.array_equal(h_hat, h)
    assert h_hat is not h
    assert rng.bit_generator.state == state


# ---- transmission, equalisation, SNR -----------------------------------------------------------------------------


def qpsk(rng: np.random.Generator, shape) -> np.ndarray:
    bits = rng.integers(0, 2, size=(*shape, 2))
    return ((2 * bits[..., 0] - 1) + 1j * (2 * bits[..., 1] - 1)) / math.sqrt(2)


def test_transmit_formula_and_noise_statistics():
    rng = np.random.default_rng(30)
    s = qpsk(rng, (4, 6, 500))
    h = gains(4, 6, seed=31)
    p = rng.uniform(0.0, 5.0, size=(4, 6))
    n0 = 0.37
    y = ch.transmit(s, h, p, n0, np.random.default_rng(32))
    noise = ch.transmit(np.zeros_like(s), h, p, n0, np.random.default_rng(32))
    np.testing.assert_allclose(y - noise, np.sqrt(p)[..., None] * h[..., None] * s, atol=1e-12)
    # noise alone: CN(0, N0)
    n = ch.transmit(np.zeros((200_000, 1)), 1.0, 0.0, n0, np.random.default_rng(33))
    assert np.mean(np.abs(n) ** 2) == pytest.approx(n0, rel=0.015)
    assert np.var(n.real) == pytest.approx(n0 / 2, rel=0.02)
    assert np.var(n.imag) == pytest.approx(n0 / 2, rel=0.02)
    assert abs(np.mean(n)) < 0.005
    with pytest.raises(ValueError, match="power"):
        ch.transmit(s, h, -1.0, n0, rng)


def test_mmse_recovers_symbols_at_high_snr():
    rng = np.random.default_rng(34)
    s = qpsk(rng, (64, 8, 256))
    h = ch.sample_block_gains(ChannelConfig(fading="awgn"), 64, 8, rng)
    power = 10.0**4  # 40 dB
    y = ch.transmit(s, h, power, 1.0, rng)
    s_hat = ch.mmse_equalise(y, h, power, 1.0)
    assert np.mean(np.abs(s_hat - s) ** 2) < 2e-4
    decided = (np.sign(s_hat.real) + 1j * np.sign(s_hat.imag)) / math.sqrt(2)
    assert np.array_equal(decided, s)
    np.testing.assert_allclose(ch.zf_equalise(y, h, power), s, atol=0.05)


@pytest.mark.parametrize("symbols", ["qpsk", "gaussian"])
def test_mmse_mse_matches_theory_on_awgn(symbols):
    rng = np.random.default_rng(35)
    snr_db = np.array([-10.0, -5.0, 0.0, 5.0, 10.0, 20.0])
    power = 10 ** (snr_db / 10)  # N0 = 1, |h| = 1: SNR = power
    shape = (1, snr_db.size, 40_000)
    if symbols == "qpsk":
        s = qpsk(rng, shape)
    else:
        s = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / math.sqrt(2)
    h = np.ones((1, snr_db.size))
    y = ch.transmit(s, h, power[None], 1.0, rng)
    s_hat = ch.mmse_equalise(y, h, power[None], 1.0)
    mse = np.mean(np.abs(s_hat - s) ** 2, axis=-1)[0]
    np.testing.assert_allclose(mse, ch.mmse_mse(power), rtol=0.03)
    np.testing.assert_allclose(ch.snr_db(power, h[0], 1.0), snr_db, atol=1e-12)
    # ZF has error N0 / SNR instead, always above the MMSE error
    zf = np.mean(np.abs(ch.zf_equalise(y, h, power[None]) - s) ** 2, axis=-1)[0]
    np.testing.assert_allclose(zf, 1.0 / power, rtol=0.03)


def test_zero_power_blocks_estimate_zero():
    y = np.ones((1, 2, 3), dtype=complex)
    h = np.array([[1.0 + 0j, 0.0]])
    assert np.array_equal(ch.mmse_equalise(y, h, [[0.0, 1.0]], 1.0), np.zeros((1, 2, 3)))
    assert np.array_equal(ch.zf_equalise(y, h, [[0.0, 1.0]]), np.zeros((1, 2, 3)))
    assert ch.snr_db(0.0, 1.0, 1.0) == -np.inf


def test_capacity_and_outage_closed_forms():
    np.testing.assert_allclose(ch.shannon_capacity([0.0, 1.0, 3.0, 1e-12]), [0.0, 1.0, 2.0, 1e-12 / math.log(2)])
    assert ch.outage_probability_rayleigh(5.0, 5.0) == pytest.approx(1 - math.exp(-1))
    assert ch.outage_probability_rayleigh(0.0, 5.0) == 0.0
    assert ch.mmse_mse(0.0) == 1.0
    with pytest.raises(ValueError, match="mean_snr"):
        ch.outage_probability_rayleigh(1.0, 0.0)


# ---- energy accounting -----------------------------------------------------------------------------------------


def test_naive_clipping_would_overspend_but_clip_to_budget_does_not():
    """Pins why the careful clipping exists: fl(fl(E / d) * d) > E for many (E, d)."""
    rng = np.random.default_rng(40)
    left = rng.uniform(0.0, 10.0, size=20_000)
    n = rng.integers(1, 5000, size=20_000)
    t = 10.0 ** rng.uniform(-7, -2, size=20_000)
    naive = (left / (n * t)) * (n * t)
    hazard = naive > left
    assert np.count_nonzero(hazard) > 100  # the hazard is real
    p = energy.clip_to_budget(np.inf, left, n, t)  # vectorised over all 20k "environments"
    e = energy.block_energy(p, n, t)
    assert np.all(e <= left)
    assert np.all(left - e >= 0.0)
    assert np.all(e >= left * (1 - 1e-12))  # and not needlessly conservative
    assert np.all(e[hazard] < naive[hazard])


def test_clip_to_budget_vectorised_edge_cases():
    p = energy.clip_to_budget([-1.0, 0.0, 2.0, 1e300, np.inf], [1.0, 1.0, 1.0, 1.0, 0.0], 10, 1e-2)
    np.testing.assert_allclose(p, [0.0, 0.0, 2.0, 10.0, 0.0])
    with pytest.raises(ValueError, match="NaN"):
        energy.clip_to_budget(np.nan, 1.0, 10, 1e-3)
    with pytest.raises(ValueError, match="energy_left"):
        energy.clip_to_budget(1.0, -1.0, 10, 1e-3)
    with pytest.raises(ValueError, match="symbol_duration"):
        energy.clip_to_budget(1.0, 1.0, 10, 0.0)


requested_powers = st.one_of(
    st.just(0.0),
    st.just(np.inf),
    st.floats(min_value=-10.0, max_value=0.0),
    st.floats(min_value=0.0, max_value=1e12, allow_subnormal=True),
    st.floats(min_value=1e-300, max_value=1e-250),
)
near_cap_factors = st.one_of(
    st.just(1.0),
    st.sampled_from([1 - 2**-52, 1 + 2**-52, 1 + 2**-51, 1 - 1e-9, 1 + 1e-9]),
    st.floats(min_value=0.9, max_value=1.1),
)


@settings(max_examples=150, deadline=None, database=None)
@given(
    data=st.data(),
    num_envs=st.integers(1, 4),
    budget=st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=1e4), st.floats(1e-12, 1e-6)),
    symbol_duration=st.floats(min_value=1e-9, max_value=1e-1),
    num_blocks=st.integers(1, 12),
)
def test_energy_never_exceeds_budget(data, num_envs, budget, symbol_duration, num_blocks):
    default_n = data.draw(st.integers(1, 10_000))
    acct = energy.EnergyBudget(budget, default_n, symbol_duration, num_envs=num_envs)
    left = np.full(num_envs, budget)  # a parallel ledger kept with clip_to_budget and plain subtraction
    energies: list[np.ndarray] = []
    for _ in range(num_blocks):
        n = data.draw(st.integers(0, 10_000) | st.just(default_n))
        req = np.empty(num_envs)
        for i in range(num_envs):
            if data.draw(st.booleans()):  # aim right at (or a hair around) what is left
                cap = acct.remaining[i] / (n * symbol_duration) if n else 1.0
                req[i] = cap * data.draw(near_cap_factors)
            else:
                req[i] = data.draw(requested_powers)
        applied = acct.spend(req, symbols_in_block=n)
        assert applied.shape == (num_envs,)
        assert np.all(applied >= 0.0)
        assert np.all(applied <= np.maximum(req, 0.0))
        energies.append(energy.block_energy(applied, n, symbol_duration))
        assert np.all(acct.spent <= acct.budget)
        assert np.all(acct.remaining >= 0.0)

        p2 = energy.clip_to_budget(req, left, n, symbol_duration)
        e2 = energy.block_energy(p2, n, symbol_duration)
        assert np.all(p2 >= 0.0) and np.all(p2 <= np.maximum(req, 0.0))
        assert np.all(e2 <= left)
        left = left - e2
        assert np.all(left >= 0.0)
    for i in range(num_envs):  # exact sum of the float energies, no rounding
        assert math.fsum(float(e[i]) for e in energies) <= budget


def test_energy_budget_spends_everything_on_greedy_requests_and_resets():
    acct = energy.EnergyBudget([1.0, 2.0], symbols_in_block=100, symbol_duration=1e-3)
    assert acct.num_envs == 2
    np.testing.assert_allclose(acct.spend([5.0, 5.0]), [5.0, 5.0])  # 0.5 J each
    np.testing.assert_allclose(acct.spend([np.inf, 1.0]), [5.0, 1.0])
    np.testing.assert_allclose(acct.remaining, [0.0, 1.4], atol=1e-12)
    np.testing.assert_allclose(acct.spend([3.0, 3.0], mask=[True, False]), [0.0, 0.0])
    acct.reset(mask=[True, False])
    np.testing.assert_allclose(acct.remaining, [1.0, 1.4], atol=1e-12)
    acct.reset(budget=3.0)
    np.testing.assert_allclose(acct.remaining, [3.0, 3.0])
    with pytest.raises(ValueError, match="budget"):
        energy.EnergyBudget(-1.0, 10, 1e-3)


# ---- configuration -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("fading", "rayleig"),
        ("rician_k", -0.5),
        ("nakagami_m", 0.4),
        ("doppler_hz", -1.0),
        ("block_duration_s", 0.0),
        ("path_loss_db", float("inf")),
        ("noise_power", 0.0),
        ("csi_error_var", -1e-3),
        ("sionna_model", "F"),
        ("sionna_delay_spread_s", -1e-9),
        ("sionna_carrier_hz", float("nan")),
    ],
)
def test_config_validation_names_field_value_and_range(field, value):
    with pytest.raises(ValueError) as info:
        ChannelConfig(**{field: value})
    message = str(info.value)
    assert f"ChannelConfig.{field}" in message
    assert repr(value) in message or str(value) in message
    assert "must be" in message


def test_config_types_and_frozen():
    with pytest.raises(TypeError, match="rician_k"):
        ChannelConfig(rician_k="3")
    with pytest.raises(TypeError, match="noise_power"):
        ChannelConfig(noise_power=True)
    cfg = ChannelConfig(rician_k=3, noise_power=2)
    assert isinstance(cfg.rician_k, float) and cfg == ChannelConfig(rician_k=3.0, noise_power=2.0)
    assert cfg.to_dict()["rician_k"] == 3.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.fading = "awgn"


def test_missing_sionna_gives_install_hint(monkeypatch):
    sionna_tdl._seeded_tdl_class.cache_clear()
    monkeypatch.setitem(sys.modules, "sionna", None)
    monkeypatch.setitem(sys.modules, "sionna.phy", None)
    try:
        with pytest.raises(ImportError, match=r'pip install "meg-gym\[sionna\]"'):
            gains(2, 2, fading="sionna-tdl")
    finally:
        sionna_tdl._seeded_tdl_class.cache_clear()


# ---- against Sionna (a test dependency: a missing or broken install fails here, it is not skipped) -----------


@pytest.fixture(scope="module")
def sionna_phy():
    import torch

    state = torch.get_rng_state()  # importing sionna.phy reseeds torch's global generator
    try:
        import sionna.phy
    finally:
        torch.set_rng_state(state)
    return sionna.phy


def _with_generator(cls, seed: int):
    """A Sionna channel-model class whose draws come from a private, seeded torch generator."""
    import torch

    generator = torch.Generator(device="cpu")
    generator.manual_seed(seed)

    class Seeded(cls):
        @property
        def torch_rng(self):
            return generator

    return Seeded


def test_rayleigh_matches_sionna_rayleigh_block_fading(sionna_phy):
    from sionna.phy.channel import RayleighBlockFading

    n = 4000
    model = _with_generator(RayleighBlockFading, 123)(num_rx=1, num_rx_ant=1, num_tx=1, num_tx_ant=1, device="cpu")
    a, tau = model(batch_size=n, num_time_steps=1)
    theirs = np.abs(a.numpy().reshape(n)) ** 2
    ours = np.abs(gains(n, 1, seed=124).ravel()) ** 2
    assert np.mean(theirs) == pytest.approx(1.0, abs=0.1)
    assert np.mean(ours) == pytest.approx(np.mean(theirs), abs=0.1)
    assert stats.ks_2samp(ours, theirs).pvalue > 0.001


@pytest.mark.parametrize("model", ["A", "D"])
def test_sionna_tdl_unit_power_and_deterministic(sionna_phy, model):
    h = gains(3000, 2, seed=50, fading="sionna-tdl", sionna_model=model)
    assert h.shape == (3000, 2) and h.dtype == np.complex128
    assert np.mean(np.abs(h) ** 2) == pytest.approx(1.0, abs=0.08)
    assert np.array_equal(h, gains(3000, 2, seed=50, fading="sionna-tdl", sionna_model=model))
    assert not np.array_equal(h, gains(3000, 2, seed=51, fading="sionna-tdl", sionna_model=model))
    lossy = gains(3000, 2, seed=50, fading="sionna-tdl", sionna_model=model, path_loss_db=6.0)
    np.testing.assert_allclose(lossy, h * 10 ** (-6 / 20), rtol=1e-12)


def test_sionna_tdl_gain_is_the_dc_frequency_response(sionna_phy):
    """Rebuild the draw with Sionna's public API and check our gain is its frequency response at 0 Hz."""
    import torch
    from sionna.phy import SPEED_OF_LIGHT
    from sionna.phy.channel import cir_to_ofdm_channel
    from sionna.phy.channel.tr38901 import TDL

    cfg = ChannelConfig(fading="sionna-tdl", sionna_model="C", doppler_hz=50.0, sionna_delay_spread_s=300e-9)
    ours = ch.sample_block_gains(cfg, 8, 5, np.random.default_rng(60))
    seed = int(np.random.default_rng(60).integers(0, 2**63 - 1))  # how sample_block_gains seeds Sionna
    speed = cfg.doppler_hz * SPEED_OF_LIGHT / cfg.sionna_carrier_hz
    tdl = _with_generator(TDL, seed)(
        "C", delay_spread=300e-9, carrier_frequency=cfg.sionna_carrier_hz, min_speed=speed, max_speed=speed,
        precision="double", device="cpu",
    )  # fmt: skip
    a, tau = tdl(batch_size=8, num_time_steps=5, sampling_frequency=1.0 / cfg.block_duration_s)
    h_f = cir_to_ofdm_channel(torch.zeros(1, dtype=torch.float64), a, tau)  # [8, 1, 1, 1, 1, 5, 1]
    theirs = h_f[:, 0, 0, 0, 0, :, 0].numpy() / math.sqrt(float(tdl.mean_powers.sum()))
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


def test_sionna_tdl_block_correlation_follows_doppler(sionna_phy):
    still = gains(50, 6, seed=70, fading="sionna-tdl", doppler_hz=0.0)
    assert np.allclose(still, still[:, :1])  # no mobility: one gain per episode
    h = gains(3000, 2, seed=71, fading="sionna-tdl", sionna_model="A", doppler_hz=100.0)
    lag1 = np.mean(h[:, 1] * np.conj(h[:, 0])) / np.mean(np.abs(h) ** 2)
    assert lag1.real == pytest.approx(special.j0(2 * np.pi * 100.0 * 1e-3), abs=0.04)  # Jakes, as sum of sinusoids


def test_sionna_path_leaves_torch_global_rng_alone(sionna_phy):
    code = (
        "import numpy as np, torch\n"
        "from meg_gym.channel import ChannelConfig, sample_block_gains\n"
        "torch.manual_seed(0); a = torch.rand(4)\n"
        "torch.manual_seed(0)\n"
        "sample_block_gains(ChannelConfig(fading='sionna-tdl'), 2, 2, np.random.default_rng(0))\n"
        "print(bool(torch.equal(a, torch.rand(4))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "True"


# ---- batched forms: one Generator per environment ------------------------------------------------------------


def test_transmit_each_equals_transmit_row_by_row():
    rng = np.random.default_rng(0)
    symbols = ch.transmit(np.ones((5, 4)), 1.0, 1.0, 1.0, rng)  # any complex symbols
    h, power = rng.normal(size=5) + 1j * rng.normal(size=5), rng.uniform(0, 3, 5)
    seeds = [11, 12, 13, 14, 15]
    batched = ch.transmit_each(symbols, h, power, 0.7, [np.random.default_rng(s) for s in seeds])
    for e, s in enumerate(seeds):
        one = ch.transmit(symbols[e], h[e], power[e], 0.7, np.random.default_rng(s))
        assert np.array_equal(batched[e], one)


def test_interfering_links_reduce_to_the_single_link_without_interference():
    rng = np.random.default_rng(1)
    m, n, s = 3, 2, 6
    symbols = (rng.normal(size=(m, n, s)) + 1j * rng.normal(size=(m, n, s))) / np.sqrt(2)
    g = np.zeros((m, n, n), dtype=np.complex128)
    g[:, 0, 0], g[:, 1, 1] = 1.5 + 0.5j, 0.3j  # no cross gains
    y = ch.transmit_interfering(symbols, g, 0.5, [np.random.default_rng(e) for e in range(m)])
    est, sinr, interference = ch.mmse_equalise_interfering(y, g, 0.5)
    assert np.all(interference == 0)
    np.testing.assert_allclose(sinr[:, 0], abs(1.5 + 0.5j) ** 2 / 0.5)
    for e in range(m):
        for i in range(n):
            expected = ch.mmse_equalise(y[e, i], g[e, i, i], 1.0, 0.5)
            np.testing.assert_allclose(est[e, i], expected, rtol=1e-12)
    # cross gains add interference power and lower the SINR
    g[:, 0, 1] = 1.0
    _, sinr2, interference2 = ch.mmse_equalise_interfering(y, g, 0.5)
    assert np.all(interference2[:, 0] == 1.0) and np.all(sinr2[:, 0] < sinr[:, 0])
