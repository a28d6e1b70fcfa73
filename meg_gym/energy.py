"""Energy accounting of the MEG links: what a block costs, and a budget that is never exceeded.

A block of ``n`` symbols of duration ``T_s`` sent at power ``p`` spends the energy ``p * (n * T_s)``
(:func:`block_energy`). :func:`clip_to_budget` cuts a requested power to what the energy left allows, and
:class:`EnergyBudget` keeps per-environment accounts over an episode such that the exact total of the
energies it hands out never exceeds the budget, floating-point rounding included. Units follow
:mod:`meg_gym.channel`: power per symbol in the units of the noise power.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["EnergyBudget", "block_energy", "clip_to_budget"]


def _block_duration(symbols_in_block: Any, symbol_duration: Any) -> np.ndarray:
    """Validated ``symbols_in_block * symbol_duration`` (seconds of transmission per block), as floats."""
    n = np.asarray(symbols_in_block)
    if n.dtype == bool or not np.issubdtype(n.dtype, np.integer) or np.any(n < 0):
        raise ValueError(f"symbols_in_block must be a non-negative integer, got {symbols_in_block!r}")
    t = np.asarray(symbol_duration, dtype=np.float64)
    if not np.all(np.isfinite(t)) or np.any(t <= 0):
        raise ValueError(f"symbol_duration must be a finite number > 0, got {symbol_duration!r}")
    return n.astype(np.float64) * t


def block_energy(power: Any, symbols_in_block: Any, symbol_duration: Any) -> np.ndarray:
    """Energy spent by one block: ``power * (symbols_in_block * symbol_duration)``.

    Always computed in this order, so the spend that :func:`clip_to_budget` checks is the spend callers record.
    All arguments broadcast together (one value per environment, or shared).
    """
    return np.asarray(power, dtype=np.float64) * _block_duration(symbols_in_block, symbol_duration)


def _requested(requested_power: Any) -> np.ndarray:
    p = np.asarray(requested_power, dtype=np.float64)
    if np.any(np.isnan(p)):
        raise ValueError("requested_power contains NaN")
    return np.maximum(p, 0.0)


def _shrink_until(applied: np.ndarray, violates: Any, max_steps: int = 16) -> np.ndarray:
    """Step ``applied`` down one float at a time where ``violates(applied)``; fall back to 0 if still violating."""
    for _ in range(max_steps):
        bad = violates(applied)
        if not np.any(bad):
            return applied
        applied = np.where(bad, np.nextafter(applied, 0.0), applied)
    return np.where(violates(applied), 0.0, applied)


def clip_to_budget(requested_power: Any, energy_left: Any, symbols_in_block: Any, symbol_duration: Any) -> np.ndarray:
    """The power actually applied to a block: as close to ``requested_power`` as the energy left allows.

    Vectorised over environments: all arguments broadcast together. The result satisfies, elementwise and in
    floating point, ``0 <= applied <= max(requested, 0)`` and
    ``block_energy(applied, symbols_in_block, symbol_duration) <= energy_left``, so
    ``energy_left - block_energy(...)`` is never negative. Negative requests give 0, ``+inf`` gives all that
    is left; NaN raises ``ValueError``. A block of zero symbols transmits nothing: its applied power is 0.
    """
    duration = _block_duration(symbols_in_block, symbol_duration)
    left = np.asarray(energy_left, dtype=np.float64)
    if np.any(np.isnan(left)) or np.any(left < 0):
        raise ValueError(f"energy_left must be >= 0, got {energy_left!r}")
    req = _requested(requested_power)
    active = duration > 0
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        cap = left / np.where(active, duration, 1.0)
    applied = np.where(active, np.minimum(req, np.minimum(cap, np.finfo(np.float64).max)), 0.0)

    def violates(p: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):
            return p * duration > left

    return _shrink_until(np.asarray(applied, dtype=np.float64), violates)


def _sum_rounded_up(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """fl(a + b), moved up one float wherever rounding went below the exact sum (Knuth's TwoSum error term)."""
    s = a + b
    b_virtual = s - a
    a_virtual = s - b_virtual
    err = (a - a_virtual) + (b - b_virtual)
    return np.where(err > 0, np.nextafter(s, np.inf), s)


class EnergyBudget:
    """Per-episode energy accounting for a batch of environments; never lets spending exceed the budget.

    ``spent`` is kept as an upper bound of the exact sum of the block energies recorded so far (each addition
    is rounded up when floating-point rounding would have lost energy), and every block is clipped so that
    ``spent <= budget`` afterwards. Hence the exact total of the energies returned by :meth:`spend` never
    exceeds ``budget``, and :attr:`remaining` is never negative.

    Args:
        budget: Energy budget per environment (scalar or shape ``(num_envs,)``), finite and >= 0.
        symbols_in_block: Default number of symbols per block (may be overridden per call).
        symbol_duration: Symbol duration T_s in seconds (> 0), shared or one per environment.
        num_envs: Number of environments when ``budget`` is a scalar (default 1, giving shape ``(1,)``).
    """

    def __init__(self, budget: Any, symbols_in_block: int, symbol_duration: Any, num_envs: int | None = None):
        _block_duration(symbols_in_block, symbol_duration)
        if num_envs is not None and (
            isinstance(num_envs, bool) or not isinstance(num_envs, int | np.integer) or num_envs < 1
        ):
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        budget = np.asarray(budget, dtype=np.float64)
        if budget.ndim == 0:
            budget = np.full(1 if num_envs is None else int(num_envs), float(budget))
        if budget.ndim != 1 or not np.all(np.isfinite(budget)) or np.any(budget < 0):
            raise ValueError("budget must be finite and >= 0, a scalar or a 1-D array (one entry per environment)")
        if num_envs is not None and budget.shape[0] != num_envs:
            raise ValueError(f"budget has {budget.shape[0]} entries but num_envs={num_envs}")
        self.budget = budget
        self.symbols_in_block = int(symbols_in_block)
        self.symbol_duration = (
            float(symbol_duration) if np.ndim(symbol_duration) == 0 else np.asarray(symbol_duration, dtype=np.float64)
        )
        self.spent = np.zeros_like(budget)

    @property
    def num_envs(self) -> int:
        return int(self.budget.shape[0])

    @property
    def remaining(self) -> np.ndarray:
        """Energy left per environment, >= 0."""
        return np.maximum(self.budget - self.spent, 0.0)

    def reset(self, mask: Any = None, budget: Any = None) -> None:
        """Start new episodes: zero ``spent`` (where ``mask`` is true, or everywhere), optionally with a new budget."""
        sel = np.ones(self.num_envs, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        if budget is not None:
            new = np.broadcast_to(np.asarray(budget, dtype=np.float64), self.budget.shape)
            if not np.all(np.isfinite(new[sel])) or np.any(new[sel] < 0):
                raise ValueError("budget must be finite and >= 0")
            self.budget = np.where(sel, new, self.budget)
        self.spent = np.where(sel, 0.0, self.spent)

    def spend(self, requested_power: Any, symbols_in_block: int | None = None, mask: Any = None) -> np.ndarray:
        """Clip the requested powers to the budget, record the energy spent and return the applied powers.

        Args:
            requested_power: Power requested per environment (scalar or shape ``(num_envs,)``).
            symbols_in_block: Symbols in this block if it differs from the default (e.g. a shorter last block).
            mask: Optional boolean per environment; environments outside it transmit nothing (applied 0).

        Returns:
            Applied power per environment, shape ``(num_envs,)``, with ``0 <= applied <= max(requested, 0)``.
        """
        n = self.symbols_in_block if symbols_in_block is None else symbols_in_block
        req = np.broadcast_to(_requested(requested_power), self.budget.shape)
        if mask is not None:
            req = np.where(np.asarray(mask, dtype=bool), req, 0.0)
        applied = clip_to_budget(req, self.remaining, n, self.symbol_duration)

        def violates(p: np.ndarray) -> np.ndarray:
            return _sum_rounded_up(self.spent, block_energy(p, n, self.symbol_duration)) > self.budget

        applied = _shrink_until(applied, violates)
        self.spent = _sum_rounded_up(self.spent, block_energy(applied, n, self.symbol_duration))
        return applied

    def __repr__(self) -> str:
        return (
            f"EnergyBudget(num_envs={self.num_envs}, symbols_in_block={self.symbols_in_block}, "
            f"symbol_duration={self.symbol_duration!r})"
        )
