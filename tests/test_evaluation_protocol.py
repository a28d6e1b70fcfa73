"""scripts/evaluate.py, meg_gym.leaderboard (scripts/leaderboard.py) and the reproduction's statistics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from meg_gym import evaluation, leaderboard
from meg_gym.cache import LEGACY_DEFAULT_CACHE, cache_fingerprint

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))  # reproduce_paper, benchmark, evaluate_split_codec
EPISODES = ["--eval-episodes", "16"]


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize(
    "script, flags",
    [
        ("ppo_continuous_action.py", ["--total-timesteps", "256", "--num-envs", "16", "--num-steps", "16"]),
        ("sac_continuous_action.py", ["--total-timesteps", "320", "--learning-starts", "160", "--batch-size", "32"]),
        ("ippo_multi_cell.py", ["--total-timesteps", "128", "--num-envs", "4", "--num-steps", "16"]),
    ],
)
def test_evaluate_reproduces_a_saved_learner_exactly(script, flags, tmp_path):
    trained = run([str(ROOT / "baselines" / script), "--run-name", "r", "--save-model",
                   "--env.budget-fraction", "0.1", *flags, *EPISODES], tmp_path)  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    env_id = ["--env-id", "MEG-MultiCell-v0"] if script.startswith("ippo") else []
    result = run([str(ROOT / "scripts" / "evaluate.py"), "--policy", "runs/r", "--seed", "7", *env_id, *EPISODES],
                 tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    original = json.loads((tmp_path / "runs" / "r" / "eval.json").read_text())
    again = json.loads((tmp_path / "runs" / f"eval__{script.split('_')[0]}__7" / "eval.json").read_text())
    evaluation.validate_eval(again)
    # the run's own settings are used (budget 0.1), and the deterministic policy gives the same episodes
    assert again["env_config"]["budget_fraction"] == 0.1
    assert again["seeds"] == original["seeds"]
    np.testing.assert_allclose(again["psnr"]["per_episode"], original["psnr"]["per_episode"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(again["energy_used"]["per_episode"], original["energy_used"]["per_episode"], rtol=1e-9)


def test_evaluate_takes_fixed_policies_and_user_callables(tmp_path):
    (tmp_path / "mine.py").write_text(
        "import numpy as np\n\ndef make():\n    return lambda obs, env: np.clip(obs[:, 3], 0, 1)\n"
    )
    fixed = run([str(ROOT / "scripts" / "evaluate.py"), "--policy", "static", *EPISODES], tmp_path)
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    mine = run([str(ROOT / "scripts" / "evaluate.py"), "--policy", "mine.py:make", "--name", "fair", *EPISODES],
               tmp_path)  # fmt: skip
    assert mine.returncode == 0, mine.stderr[-3000:]
    static = json.loads((tmp_path / "runs" / "eval__static__1" / "eval.json").read_text())
    fair = json.loads((tmp_path / "runs" / "eval__fair__1" / "eval.json").read_text())
    assert fair["policy"] == "fair" and static["policy"] == "static"
    # each result names the latent cache its episodes ran on
    assert static["cache_sha256"] == fair["cache_sha256"] == cache_fingerprint()
    # the user's factory builds the static policy, so the two evaluations agree episode by episode
    np.testing.assert_allclose(fair["psnr"]["per_episode"], static["psnr"]["per_episode"], rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    "policy, message",
    [
        ("nowhere/at/all", "not a fixed policy"),
        ("json:no_such_attribute", "has no attribute"),
        ("no_such_module_xyz:f", "cannot import"),
        ("empty_run", "no model.json"),
    ],
)
def test_evaluate_rejects_bad_policies_with_a_clear_message(policy, message, tmp_path):
    (tmp_path / "empty_run").mkdir()
    result = run([str(ROOT / "scripts" / "evaluate.py"), "--policy", policy, *EPISODES], tmp_path)
    assert result.returncode != 0
    assert message in result.stderr


def fake_eval(path: Path, policy: str, seed: int, psnr: np.ndarray, steps: int = 0, budget: float = 0.05,
              cache: str | None = None) -> Path:  # fmt: skip
    n = len(psnr)
    metric = lambda v: {"mean": float(np.mean(v)), "std": float(np.std(v)), "per_episode": list(map(float, v))}  # noqa: E731
    result = {
        "schema": evaluation.SCHEMA,
        "env_id": "MEG-PowerControl-v0",
        "env_kwargs": {"budget_fraction": budget, "split": "test"},
        "episodes": n,
        "seeds": [evaluation.EVAL_SEED + j for j in range(n)],
        "quality": metric(psnr),
        "psnr": metric(psnr),
        "ssim": metric(np.full(n, 0.8)),
        "energy_used": metric(np.full(n, 1e-5)),
        "energy_budget": 2e-5,
        **({"cache_sha256": cache} if cache else {}),
    }
    return evaluation.write_eval(path, result, policy, f"{policy}-{seed}", {"seed": seed, "total_timesteps": steps})


def test_leaderboard_statistics_and_database(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.normal(19.0, 1.0, 32)
    fake_eval(tmp_path / "in" / "static" / "eval.json", "static", 1, base)
    fake_eval(tmp_path / "in" / "best" / "eval.json", "best-known", 1, base + 1.0)
    fake_eval(tmp_path / "in" / "oracle" / "eval.json", "oracle", 1, base + 0.9)  # the old name joins its new row
    for seed, shift in zip((1, 2, 3), (0.2, 0.4, 0.6), strict=True):
        fake_eval(tmp_path / "in" / f"ppo{seed}" / "eval.json", "ppo", seed, base + shift, steps=100_000)
    fake_eval(tmp_path / "other" / "eval.json", "static", 1, base - 1.0, budget=0.1)
    out = tmp_path / "docs" / "leaderboard.md"
    tables = leaderboard.main(leaderboard.Args(paths=[tmp_path / "in"], output=out, reps=500))
    assert len(tables) == 1 and tables[0]["label"] == "default"
    rows = {r["policy"]: r for r in tables[0]["rows"]}
    ppo = rows["ppo (100k)"]
    assert ppo["runs"] == 3
    assert ppo["psnr_mean"][0] == pytest.approx(base.mean() + 0.4)
    assert ppo["psnr_mean"][1] <= ppo["psnr_mean"][0] <= ppo["psnr_mean"][2]
    assert ppo["psnr_mean"][1] >= base.mean() + 0.2 - 1e-9 and ppo["psnr_mean"][2] <= base.mean() + 0.6 + 1e-9
    assert ppo["gap_to_reference"][0] == pytest.approx(0.6)
    assert ppo["normalised"] == pytest.approx([0.2, 0.4, 0.6])
    # paired: the episodes cancel, so the interval is the spread of the three seeds' scores (0.2 .. 0.6)
    assert ppo["score"][0] == pytest.approx(0.4) and 0.2 - 1e-9 <= ppo["score"][1] < 0.4 < ppo["score"][2] <= 0.6 + 1e-9
    assert rows["mmse-water-filling"]["score"][0] == pytest.approx(0.9)
    assert ppo["energy_fraction"] == pytest.approx(0.5)
    assert rows["best-known"]["gap_to_reference"][0] == pytest.approx(0.0)
    assert "ppo (100k)" in out.read_text() and out.with_name("leaderboard-profile.png").stat().st_size > 1000
    # adding a second configuration keeps the first (the database), adding the same runs again does not duplicate
    leaderboard.main(leaderboard.Args(paths=[tmp_path / "other", tmp_path / "in"], output=out, reps=500))
    database = json.loads(out.with_suffix(".json").read_text())
    assert len(database["records"]) == 7
    assert [t["label"] for t in database["tables"]] == ["budget_fraction=0.1", "default"]
    # a superseded submission is dropped by its run names, the rest stays
    leaderboard.main(leaderboard.Args(paths=[], output=out, reps=500, drop=["ppo-[12]"]))
    database = json.loads(out.with_suffix(".json").read_text())
    assert sorted(r["run_name"] for r in database["records"] if r["policy"] == "ppo") == ["ppo-3"]
    assert len(database["records"]) == 5
    # a damaged eval.json is refused with the file named
    broken = tmp_path / "broken" / "eval.json"
    broken.parent.mkdir()
    broken.write_text('{"schema": "meg-gym-eval/1"}')
    with pytest.raises(SystemExit, match="broken/eval.json: not a valid eval.json"):
        leaderboard.main(leaderboard.Args(paths=[broken.parent], output=out, reps=500))


def test_leaderboard_never_pools_results_from_different_caches(tmp_path):
    base = np.random.default_rng(1).normal(19.0, 1.0, 16)
    fake_eval(tmp_path / "now" / "eval.json", "static", 1, base, cache=cache_fingerprint())
    fake_eval(tmp_path / "other" / "eval.json", "static", 1, base - 2.0, cache="ab" * 32)
    # written before eval.json named its cache, on a cache of the user's own
    legacy = fake_eval(tmp_path / "legacy" / "eval.json", "static", 1, base - 1.0)
    data = json.loads(legacy.read_text())
    data["env_kwargs"]["cache_dir"] = "/data/my-cache"
    legacy.write_text(json.dumps(data))
    out = tmp_path / "leaderboard.md"
    tables = leaderboard.main(leaderboard.Args(paths=[tmp_path], output=out, reps=200))
    caches = [t["cache_sha256"] for t in tables if t["label"] == "default"]
    assert caches == [cache_fingerprint(), "ab" * 32]  # the shipped cache's table first
    assert [t["cache_sha256"] for t in tables if t["label"] != "default"] == [leaderboard.UNRECORDED]
    assert all(len(t["rows"]) == 1 and t["rows"][0]["runs"] == 1 for t in tables)
    assert f"cache {cache_fingerprint()[:12]} (the shipped default)" in out.read_text()
    # a default-cache result written before 2026-11-28 ran on the only default cache of that time
    assert leaderboard.cache_of(None, {"cache_dir": None}) == LEGACY_DEFAULT_CACHE
    with pytest.raises(ValueError, match="cache_sha256"):
        fake_eval(tmp_path / "bad" / "eval.json", "static", 1, base, cache="not-a-checksum")


def test_reproduction_crossover_finds_where_the_seed_stops_winning():
    import reproduce_paper

    rng = np.random.default_rng(0)
    snrs = [-20.0, -10.0, 0.0, 10.0]
    gains = [3.0, 2.0, 0.5, -2.0]
    raw = [rng.normal(15, 1, 200) for _ in snrs]
    seed = [r + g + rng.normal(0, 0.1, 200) for r, g in zip(raw, gains, strict=True)]
    curves = {
        "raw latent": {"snr_db": snrs, "psnr_per_image": [r.tolist() for r in raw]},
        "seed 1/4": {"snr_db": snrs, "psnr_per_image": [s.tolist() for s in seed]},
    }
    result = reproduce_paper.crossover(curves, "seed 1/4", "raw latent")
    assert reproduce_paper.verdict(result["rows"]) == "better at -20 to +0 dB; worse at +10 dB"
    assert [r["diff"] for r in result["rows"]] == pytest.approx(gains, abs=0.05)
    assert all(r["ci"][0] < r["diff"] < r["ci"][1] for r in result["rows"])


def test_evaluate_covers_the_multi_cell_environment(tmp_path):
    args = [
        "--env-id",
        "MEG-MultiCell-v0",
        "--policy",
        "sinr-threshold",
        "--env.num-links",
        "3",
        "--eval-episodes",
        "8",
    ]
    result = run([str(ROOT / "scripts" / "evaluate.py"), *args], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((tmp_path / "runs" / "eval__sinr-threshold__1" / "eval.json").read_text())
    evaluation.validate_eval(data)
    assert data["env_id"] == "MEG-MultiCell-v0" and data["env_config"]["num_links"] == 3
    assert data["cache_sha256"] == cache_fingerprint()
    assert len(data["per_agent"]["psnr"]["mean"]) == 3
    wrong = run([str(ROOT / "scripts" / "evaluate.py"), "--env-id", "MEG-MultiCell-v0", "--policy", "oracle"], tmp_path)
    assert wrong.returncode != 0 and "not a fixed policy" in wrong.stderr


def test_reproduction_figure_a_and_the_benchmark_floor_run(tmp_path):
    import reproduce_paper

    from meg_gym.cli import benchmark

    output = tmp_path / "reproduction.md"
    reproduce_paper.main(reproduce_paper.Args(figures=["a"], prompts=16, output=output))
    data = json.loads(output.with_suffix(".json").read_text())
    assert data["a"]["symbols"]["MEG, seed 1/4"] == 32 and data["a"]["symbols"]["centralised, analogue"] == 6144
    assert "Claim 1 holds" in output.read_text() and (tmp_path / "reproduction-a.png").stat().st_size > 1000
    floor = benchmark.compute_floor(8, benchmark.Args(seconds=0.2, repeats=1))
    assert floor["steps_per_s"] > 0 and set(floor["ms_per_episode"]) >= {"seed decode", "VAE decode", "PSNR + SSIM"}


def test_split_codec_report_runs_and_its_references_make_sense(tmp_path):
    import evaluate_split_codec as split_codec

    args = split_codec.Args(snrs_db=(10.0,), ratios=(0.25,), raw_latent=False, prompts=4,
                            output=tmp_path / "split_codec.md")  # fmt: skip
    result = split_codec.main(args)
    rows = result["rows"]
    assert [r["ue_steps"] for r in rows] == [15, 10, 5, 0]  # every split step of the shipped cache
    for row in rows:
        # DDIM with eta 0 is deterministic: the exact ES latent gives back the clean image
        assert row["exact_latent_psnr"] > 60
        assert row["cells"]["+10 dB"]["psnr"] < row["exact_latent_psnr"]
        assert row["cells"]["+10 dB"]["latent_snr_db"] <= row["cells"]["clean"]["latent_snr_db"] + 0.5
    assert "| 20 | 0 | seed 0.25 | 32 |" in (tmp_path / "split_codec.md").read_text()


def test_split_control_report_and_table_validation_run(tmp_path):
    import evaluate_split_control
    import validate_split_table

    from meg_gym.config import SplitControlConfig

    args = evaluate_split_control.Args(policies=("best-fixed", "planner"), episodes=8, num_envs=8,
                                       runs_dir=tmp_path / "runs", output=tmp_path / "sc.md",
                                       env=SplitControlConfig(num_requests=8))  # fmt: skip
    report = evaluate_split_control.main(args)
    assert report["planner_bound"]["bound"] >= report["policies"]["planner"]["psnr"][0] - 1.0
    assert (tmp_path / "runs" / "planner" / "eval.json").exists()
    page = (tmp_path / "sc.md").read_text()
    assert "planner - best-fixed" in page and "| 15 / seed-1/4 |" in page
    result = validate_split_table.main(validate_split_table.Args(prompts=2, draws=1, sessions=0, snr_db=(5.0, 7.5),
                                                                 output=tmp_path / "v.md"))  # fmt: skip
    cells = result["per_cell"]["cells"]
    assert len(cells) == 4 * 5 * 2 and {c["on_grid"] for c in cells} == {True, False}
    summary = validate_split_table.cell_summary(result["per_cell"])
    assert set(summary["schemes"]) == set(SplitControlConfig().schemes) and summary["cells"] == 40
    assert "Cells whose 95% interval excludes zero" in (tmp_path / "v.md").read_text()


def test_leaderboard_drops_records_of_an_earlier_quality_table_and_shows_live_scores(tmp_path):
    from meg_gym import leaderboard
    from meg_gym.config import SplitControlConfig
    from meg_gym.envs.split_control.quality_table import QualityTable
    from meg_gym.registry import environment

    config = SplitControlConfig().to_dict()
    current = QualityTable.load("test").meta["sha256"]
    record = {"env_id": "MEG-SplitControl-v0", "config": config, "table_sha256": current}
    assert not leaderboard.superseded_table(record)
    assert leaderboard.superseded_table({**record, "table_sha256": None})  # made before eval.json recorded it
    assert leaderboard.superseded_table({**record, "table_sha256": "0" * 64})
    assert not leaderboard.superseded_table({**record, "config": {**config, "fidelity": "live"}, "table_sha256": None})
    assert not leaderboard.superseded_table({"env_id": "MEG-PowerControl-v0", "config": {}})
    spec = environment("MEG-SplitControl-v0")
    live = {"planner": {"psnr": [25.0, 24.0, 26.0]}, "ppo-lagrangian (1)": {"psnr": [24.0, 23.0, 25.0]},
            "ppo-lagrangian (2)": {"psnr": [24.5, 23.5, 25.5]}, "myopic": {"psnr": [24.0, 23.0, 25.0]}}  # fmt: skip
    table = {k: {"psnr": [v["psnr"][0] + 0.1, 0, 0]} for k, v in live.items() if k != "myopic"}
    (tmp_path / "split_table_validation.json").write_text(json.dumps({"ranking": {"sessions": 128,
                                                                      "policies": {"live": live, "table": table}}}))  # fmt: skip
    scores = leaderboard.live_scores(spec, tmp_path)  # myopic has no table score on those sessions: left out
    assert scores == {"planner": [(25.0, 25.1)], "ppo-lagrangian": [(24.0, 24.1), (24.5, 24.6)]}
    assert leaderboard.live_scores(spec, tmp_path / "nowhere") == {}


def test_violation_shares_count_sessions_over_each_limit_with_intervals():
    data = {
        "cost_limits": {"ue_energy": 80.0, "deadline_miss": 1.0},
        "ue_energy": {"per_episode": [70.0, 81.0, 80.0, 90.0]},
        "deadline_miss": {"per_episode": [0.0, 2.0, 1.0, 0.0]},
    }
    shares = leaderboard.session_violations(data)
    assert shares == {"ue_energy": 0.5, "deadline_miss": 0.25, "any": 0.5}  # at the limit is within it
    one = leaderboard.violation_interval([{"violations": {"any": 0.0}, "episodes": 100}], "any")
    assert one[0] == 0.0 and one[1] == 0.0 and 0.02 < one[2] < 0.05  # Wilson: not empty at a share of 0
    runs = [{"violations": {"any": v}, "episodes": 1000} for v in (0.1, 0.2, 0.3)]
    mean, low, high = leaderboard.violation_interval(runs, "any")
    assert mean == pytest.approx(0.2) and 0.0 <= low < 0.2 < high <= 1.0
    never = leaderboard.violation_interval([{"violations": {"any": 0.0}, "episodes": 1000}] * 3, "any")
    assert never[:2] == [0.0, 0.0] and 0.0 < never[2] < 0.002  # three seeds that never break it: not [0, 0]


def test_a_tuned_sweep_trial_is_checked_live_under_its_leaderboard_label(tmp_path):
    import validate_split_table

    from meg_gym import sweep

    trial = sweep.plan(sweep.Args(env="MEG-SplitControl-v0", algo=["ppo-lagrangian"], seeds=1, total_timesteps=512))[0]
    assert sweep.command(trial, False, False, save_model=True)[-1] == "--save-model"
    assert "--save-model" not in sweep.command(trial, False, False)
    # a trial saved where a sweep keeps it (SWEEP/trials/KEY/runs/KEY), named in the ranking by its sweep row
    folder = tmp_path / "sweep" / "trials" / "k1"
    folder.mkdir(parents=True)
    cmd = [sys.executable, str(ROOT / "baselines" / "ppo_lagrangian.py"), "--total-timesteps", "512", "--num-envs",
           "4", "--num-steps", "32", "--eval-episodes", "4", "--save-model", "--run-name", "k1"]  # fmt: skip
    done = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    row = {"trial": "k1", "label": "ppo-lagrangian (tuned, 4 trials)", "seed": 2, "schema": sweep.RESULT_SCHEMA}
    (tmp_path / "sweep" / "results.jsonl").write_text(json.dumps(row) + "\n")
    policy, name = validate_split_table.learner_policy(folder / "runs" / "k1")
    assert name == "ppo-lagrangian (tuned, 4 trials) (2)" and callable(policy)
    # and the leaderboard lists that live score under the tuned row, not under the untuned "ppo-lagrangian"
    ranking = {name: {"psnr": [24.0]}, "ppo-lagrangian (1)": {"psnr": [23.0]}}
    (tmp_path / "check.json").write_text(json.dumps({"ranking": {"policies": {"live": ranking, "table": ranking}}}))
    spec = type("Spec", (), {"fidelity_check": "check.md"})
    scores = leaderboard.live_scores(spec, tmp_path)
    assert scores == {"ppo-lagrangian (tuned, 4 trials)": [(24.0, 24.0)], "ppo-lagrangian": [(23.0, 23.0)]}
