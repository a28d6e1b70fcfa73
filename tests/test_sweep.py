"""Sweeps on Ray (meg_gym.sweep): the trial plan, results.jsonl, a killed worker, a killed driver and --resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from meg_gym import sweep
from meg_gym.cache import VALIDATION_EVERY, LatentCache

ROOT = Path(__file__).resolve().parent.parent
# the smallest real trials: one PPO iteration of 16 envs x 16 steps, 16 test episodes
TINY = ["--total-timesteps", "256", "--eval-episodes", "16", "--hparams", '{"num_envs": 16, "num_steps": 16}']


def sweep_command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(ROOT / "scripts" / "sweep.py"), "--env", "MEG-PowerControl-v0", "--out", str(out),
            *TINY, *extra]  # fmt: skip


def wait_for(condition, timeout: float, what: str) -> None:
    end = time.time() + timeout
    while not condition():
        if time.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def rows_of(out: Path) -> list[dict]:
    return sweep.read_rows(out / "results.jsonl")


def test_validation_and_fit_partition_train():
    cache = LatentCache.load()
    train, fit, validation = (cache.indices(s) for s in ("train", "fit", "validation"))
    assert len(np.intersect1d(fit, validation)) == 0
    assert np.array_equal(np.sort(np.concatenate([fit, validation])), train)
    assert len(validation) == len(train) // VALIDATION_EVERY
    assert len(np.intersect1d(validation, cache.indices("test"))) == 0


def test_plan_checks_everything_before_running():
    def plan(**kwargs):
        return sweep.plan(sweep.Args(**kwargs))

    trials = plan(algo=["ppo", "sac"], seeds=2, env_config=["{}", '{"budget_fraction": 0.1}'])
    assert len(trials) == 8 and len({t.key for t in trials}) == 8
    assert [t.key for t in trials] == [t.key for t in plan(algo=["ppo", "sac"], seeds=2,
                                                          env_config=["{}", '{"budget_fraction": 0.1}'])]  # fmt: skip
    for kwargs, message in [
        ({"algo": ["dqn"]}, "unknown algorithm"),
        ({"algo": ["ppo-lagrangian"]}, "train on"),
        ({"env_config": ['{"budget_fraktion": 0.1}']}, "did you mean 'budget_fraction'"),
        ({"env_config": ['{"budget_fraction": -1}']}, "budget_fraction"),
        ({"env_config": ["[1]"]}, "JSON object"),
        ({"hparams": '{"learning_rat": 0.1}'}, "no hyperparameter"),
        ({"hparams": '{"seed": 3}'}, "no hyperparameter"),
        ({"search_trials": 2, "hparams_from": Path("x")}, "give one of them"),
        ({"seeds": 0}, ">= 1"),
    ]:
        with pytest.raises(SystemExit, match=message):
            plan(**kwargs)


def test_search_draws_the_defaults_first_then_reproducible_settings():
    settings = sweep.draw_search("td3", 5, seed=0)
    assert settings[0] == {} and len(settings) == 5
    assert settings == sweep.draw_search("td3", 5, seed=0) and settings != sweep.draw_search("td3", 5, seed=1)
    space = sweep.SEARCH_SPACES["td3"]
    for drawn in settings[1:]:
        assert set(drawn) == set(space)
        low, high = space["learning_rate"][1:]
        assert low * 0.99 <= drawn["learning_rate"] <= high * 1.01
        assert drawn["batch_size"] in space["batch_size"]
    trials = sweep.plan(sweep.Args(algo=["td3"], search_trials=5, seeds=2))
    assert len(trials) == 10 and {t.train_split for t in trials} == {"fit"} and {t.stage for t in trials} == {"search"}


def _row(trial: str, algo: str = "ppo", hparams: dict | None = None, validation: float = 20.0) -> dict:
    return {"schema": sweep.RESULT_SCHEMA, "trial": trial, "algo": algo, "stage": "search",
            "hparams": hparams or {}, "validation_psnr_mean": validation}  # fmt: skip


def test_results_reader_keeps_every_row_and_sets_a_torn_line_aside(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(_row("a")) + "\n" + json.dumps(_row("b"))[:30])
    assert [r["trial"] for r in sweep.read_rows(path)] == ["a"]
    assert path.read_text() == json.dumps(_row("a")) + "\n"
    assert (tmp_path / "results.jsonl.torn").read_text().startswith('{"schema"')
    path.write_text("not json\n" + json.dumps(_row("a")) + "\n")
    with pytest.raises(SystemExit, match="results.jsonl:1 is not JSON"):
        sweep.read_rows(path)
    path.write_text((json.dumps(_row("a")) + "\n") * 2)
    with pytest.raises(SystemExit, match="twice"):
        sweep.read_rows(path)


def test_tuning_selects_on_validation_only(tmp_path):
    rows = [
        _row("a", hparams={}, validation=20.0),
        _row("b", hparams={"learning_rate": 1e-3}, validation=21.0),
        _row("c", hparams={"learning_rate": 1e-3}, validation=20.6),  # the same setting, another seed: mean 20.8
        _row("d", hparams={"learning_rate": 2e-4}, validation=20.9),
        _row("e", algo="sac", hparams={"alpha": 0.2}, validation=18.0),
    ]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    best = sweep.best_settings(tmp_path)
    assert best["ppo"][0] == {"learning_rate": 2e-4} and best["ppo"][1] == 3
    assert np.isclose(best["ppo"][2], 20.9)
    trials = sweep.plan(sweep.Args(algo=["ppo", "sac"], seeds=3, hparams_from=tmp_path))
    assert {t.label for t in trials} == {"ppo (tuned, 3 trials)", "sac (tuned, 1 trials)"}
    assert all(t.train_split == "train" and t.validation_episodes == 0 for t in trials)
    assert {json.dumps(t.hparams) for t in trials if t.algo == "ppo"} == {'{"learning_rate": 0.0002}'}


def test_tuning_of_a_constrained_learner_selects_among_settings_that_meet_the_limits(tmp_path):
    limits = {"ue_energy": 80.0, "deadline_miss": 1.0}
    rows = [
        {**_row("a", algo="cpo", hparams={}, validation=24.0), "cost_limits": limits,
         "validation_costs": {"ue_energy": 70.0, "deadline_miss": 0.2}},
        {**_row("b", algo="cpo", hparams={"max_kl": 0.05}, validation=25.0), "cost_limits": limits,
         "validation_costs": {"ue_energy": 85.0, "deadline_miss": 0.0}},  # the best PSNR, over the energy limit
        {**_row("c", algo="cvpo", hparams={}, validation=23.0), "cost_limits": limits,
         "validation_costs": {"ue_energy": 70.0, "deadline_miss": 1.5}},
        {**_row("d", algo="cvpo", hparams={"tau": 0.05}, validation=22.0), "cost_limits": limits,
         "validation_costs": {"ue_energy": 90.0, "deadline_miss": 1.1}},  # neither meets them: the smaller excess
    ]  # fmt: skip
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    best = sweep.best_settings(tmp_path)
    assert best["cpo"][0] == {} and best["cvpo"][0] == {"tau": 0.05}
    trial = sweep.plan(sweep.Args(env="MEG-SplitControl-v0", algo=["ppo-pid-lagrangian"], seeds=1))[0]
    assert sweep.command(trial, False, False)[-4:] == ["--multiplier-update", "pid", "--exp-name", "ppo_pid_lagrangian"]


def test_tuning_report_compares_the_selected_setting_with_the_untuned_runs(tmp_path):
    from meg_gym.cache import cache_fingerprint

    drawn = sweep.draw_search("td3", 5, 0)
    validation = [18.0, 19.0, 17.5, 18.2, 19.4]  # setting 5 wins overall, setting 2 within a budget of 4
    finished = "2026-11-29T12:00:00+00:00"
    common = {"schema": sweep.RESULT_SCHEMA, "env_id": "MEG-PowerControl-v0", "algo": "td3", "total_timesteps": 50000,
              "finished": finished, "wall_s": 600.0, "commit": "0123456789abcdef0123-dirty", "cache_sha256": "c" * 64}  # fmt: skip
    for name, rows in {
        # two sessions a day apart: only the time trials ran counts (600 s each, in parallel within a session)
        "search": [{**common, "hparams": h, "validation_psnr_mean": v, "psnr_mean": 0.0, "finished": f"2026-11-2{8 + (i > 1)}T12:00:00+00:00"}
                   for i, (h, v) in enumerate(zip(drawn, validation, strict=True))],
        "tuned": [{**common, "hparams": drawn[4], "psnr_mean": p} for p in (19.0, 19.2, 19.4)],
    }.items():  # fmt: skip
        (tmp_path / name).mkdir()
        lines = [json.dumps({**r, "trial": f"{name}{i}"}) + "\n" for i, r in enumerate(rows)]
        (tmp_path / name / "results.jsonl").write_text("".join(lines))
        (tmp_path / name / "sweep.json").write_text(json.dumps({"command": ["scripts/sweep.py", "--out", name]}))
    untuned = [{"env_id": "MEG-PowerControl-v0", "policy": "td3", "training_steps": 50000, "psnr": p,
                "cache_sha256": cache_fingerprint(), "config": {}} for p in (18.0, 18.2, 18.4)]  # fmt: skip
    (tmp_path / "leaderboard.json").write_text(json.dumps({"records": untuned}))
    cmd = [sys.executable, str(ROOT / "scripts" / "tuning_report.py"), "--search", "search", "--tuned", "tuned",
           "--database", "leaderboard.json", "--output", "tuning.md"]  # fmt: skip
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "tuning.json").read_text())
    (algo,) = report["algorithms"]
    assert algo["selected"] == drawn[4] and algo["search_trials"] == 5
    assert np.isclose(algo["tuned_minus_untuned"], 1.0) and algo["ci"][0] < 1.0 < algo["ci"][1]
    assert algo["same_selection_within_budget"] is False
    assert np.isclose(report["search_hours"], 1200 / 3600) and np.isclose(report["tuned_hours"], 600 / 3600)
    text = (tmp_path / "tuning.md").read_text()
    assert "would select another setting" in text and "0123456789ab-dirty" in text and "2026-11-28, 2026-11-29" in text
    flags = " ".join(sweep.cli_flags("", drawn[4]))
    assert f"- td3: `python baselines/td3_continuous_action.py --total-timesteps 50000 {flags}`" in text
    assert "- 19.400 dB (setting 5)" in text.split("**td3**")[1].splitlines()[2]


def test_tuning_report_of_a_constrained_learner_reports_costs_and_selects_a_feasible_setting(tmp_path):
    from meg_gym.cache import cache_fingerprint

    limits = {"ue_energy": 80.0, "deadline_miss": 1.0}
    drawn = sweep.draw_search("focops", 2, 0)  # the defaults, then one drawn setting
    common = {"schema": sweep.RESULT_SCHEMA, "env_id": "MEG-SplitControl-v0", "algo": "focops", "total_timesteps": 600000,
              "finished": "2026-12-02T12:00:00+00:00", "wall_s": 300.0, "commit": "f" * 40, "cache_sha256": "c" * 64,
              "cost_limits": limits}  # fmt: skip
    search = [  # the drawn setting has the better PSNR but breaks the energy limit on validation
        {**common, "hparams": drawn[0], "validation_psnr_mean": 24.0, "psnr_mean": 0.0,
         "validation_costs": {"ue_energy": 75.0, "deadline_miss": 0.5}},
        {**common, "hparams": drawn[1], "validation_psnr_mean": 25.0, "psnr_mean": 0.0,
         "validation_costs": {"ue_energy": 95.0, "deadline_miss": 0.1}},
    ]  # fmt: skip

    def tuned_row(psnr, energies):
        per_episode = {"ue_energy": energies, "deadline_miss": [0.0] * len(energies)}
        result = {
            "cost_limits": limits,
            **{c: {"mean": float(np.mean(v)), "per_episode": v} for c, v in per_episode.items()},
        }
        return {**common, "hparams": drawn[0], "psnr_mean": psnr, "ue_energy_mean": result["ue_energy"]["mean"],
                "deadline_miss_mean": 0.0, "eval": result}  # fmt: skip

    tuned = [tuned_row(24.5, [70.0, 90.0]), tuned_row(24.7, [60.0, 70.0])]
    # CPO's search selects its defaults: no tuned runs, its untuned runs stand for them
    search += [{**common, "algo": "cpo", "hparams": h, "validation_psnr_mean": v, "psnr_mean": 0.0,
                "validation_costs": {"ue_energy": 70.0, "deadline_miss": 0.5}}
               for h, v in zip(sweep.draw_search("cpo", 2, 0), (24.0, 23.0), strict=True)]  # fmt: skip
    for name, rows in {"search": search, "tuned": tuned}.items():
        (tmp_path / name).mkdir()
        lines = [json.dumps({**r, "trial": f"{name}{i}"}) + "\n" for i, r in enumerate(rows)]
        (tmp_path / name / "results.jsonl").write_text("".join(lines))
        (tmp_path / name / "sweep.json").write_text(json.dumps({"command": ["meg-gym", "sweep", "--out", name]}))
    untuned = [{"env_id": "MEG-SplitControl-v0", "policy": "focops", "training_steps": 600000, "psnr": p,
                "cache_sha256": cache_fingerprint(), "config": {}, "ue_energy": {"mean": 78.0},
                "deadline_miss": {"mean": 0.2}, "violations": {"ue_energy": 0.4, "deadline_miss": 0.1}}
               for p in (24.0, 24.2)]  # fmt: skip
    untuned += [{**untuned[0], "policy": "cpo", "psnr": 23.5}]
    (tmp_path / "leaderboard.json").write_text(json.dumps({"records": untuned}))
    cmd = [sys.executable, str(ROOT / "scripts" / "tuning_report.py"), "--search", "search", "--tuned", "tuned",
           "--database", "leaderboard.json", "--output", "tuning.md"]  # fmt: skip
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    cpo, algo = json.loads((tmp_path / "tuning.json").read_text())["algorithms"]
    assert cpo["defaults_selected"] and cpo["tuned_test_psnr"] == cpo["untuned_test_psnr"] == [23.5]
    assert (
        algo["same_selection_within_budget"] is True and not algo["defaults_selected"]
    )  # the feasible defaults, not the better-PSNR setting
    assert np.isclose(algo["tuned_minus_untuned"], 0.5)
    assert algo["tuned_costs"]["ue_energy"] == {"mean": 72.5, "over_limit_share": 0.25}
    assert algo["untuned_costs"]["ue_energy"] == {"mean": 78.0, "over_limit_share": 0.4}
    text = (tmp_path / "tuning.md").read_text()
    assert text.startswith("# Tuned learners on MEG-SplitControl-v0")
    assert "| focops | 78.00 -> 72.50 | 0.20 -> 0.00 | 40.0 -> 25.0 | 10.0 -> 0.0 |" in text
    assert "over a limit: not selectable" in text.split("**focops**")[1].splitlines()[2]
    assert "| cpo | 600k | 2 | the defaults (tuned runs = the untuned runs) |" in text


def test_a_learner_refuses_to_score_validation_prompts_it_trained_on(tmp_path):
    cmd = [sys.executable, str(ROOT / "baselines" / "ppo_continuous_action.py"), "--validation-episodes", "8"]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "--train-split fit" in done.stderr


def test_a_killed_worker_is_retried_and_every_trial_lands_exactly_once(tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "sweep"
    driver = subprocess.Popen(sweep_command(out, "--algo", "ppo", "--seeds", "2", "--num-cpus", "2"),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        # kill the Ray worker of the first trial once its baseline is running
        wait_for(lambda: list(out.glob("trials/*/log.txt")), 240, "a trial to start")
        pid_file = next(out.glob("trials/*/worker.pid"))
        killed = int(pid_file.read_text())
        time.sleep(2)
        os.kill(killed, signal.SIGKILL)
        log, _ = driver.communicate(timeout=480)
    finally:
        driver.kill()
    assert driver.returncode == 0, log[-3000:]
    rows = rows_of(out)
    assert sorted(r["seed"] for r in rows) == [1, 2] and len({r["trial"] for r in rows}) == 2
    assert int(pid_file.read_text()) != killed, "the killed trial was not run again in another worker"
    assert not (out / "failures.jsonl").exists()
    for row in rows:
        assert row["commit"] and len(row["cache_sha256"]) == 64 and row["config"]["budget_fraction"] == 0.05
        assert row["hparams"] == {"num_envs": 16, "num_steps": 16} and row["eval"]["episodes"] == 16
        assert np.isclose(row["psnr_mean"], np.mean(row["eval"]["psnr"]["per_episode"]))


def test_a_killed_driver_resumes_without_redoing_or_duplicating_trials(tmp_path):
    pytest.importorskip("ray")
    from meg_gym import leaderboard

    out = tmp_path / "search"
    command = sweep_command(out, "--algo", "ppo", "--search-trials", "2", "--seeds", "1", "--num-cpus", "1",
                            "--validation-episodes", "16")  # fmt: skip
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: (out / "results.jsonl").exists() and rows_of(out), 300, "the first row")
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=60)
    finally:
        driver.kill()
    first = rows_of(out)
    assert len(first) == 1
    done = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=480)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 trials, 1 already done, 1 to run" in done.stdout
    rows = rows_of(out)
    assert len(rows) == 2 and len({r["trial"] for r in rows}) == 2 and rows[0] == first[0]
    assert [r["hparams"]["num_steps"] for r in rows] == [16, 16]
    assert all(r["stage"] == "search" and r["train_split"] == "fit" for r in rows)
    assert all(isinstance(r["validation_psnr_mean"], float) for r in rows)
    # resuming a finished sweep runs nothing; a new sweep into the same folder is refused
    again = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "0 to run" in again.stdout and len(rows_of(out)) == 2
    refused = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "--resume" in refused.stderr
    # search rows are selection material, not results: the leaderboard skips them
    assert leaderboard.records_of(out / "results.jsonl") == []


def test_a_tracked_sweep_logs_to_weights_and_biases_offline_without_a_network(tmp_path):
    pytest.importorskip("ray")
    pytest.importorskip("wandb")
    out = tmp_path / "tracked"
    # no key, no W&B settings, and a proxy that refuses every connection: any attempt to go online would fail
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9", NO_PROXY="")
    command = sweep_command(out, "--algo", "ppo", "--seeds", "1", "--num-cpus", "1", "--track")
    done = subprocess.run(command, capture_output=True, text=True, timeout=480, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (row,) = rows_of(out)
    runs = list((out / "trials" / row["trial"] / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    (log,) = runs[0].glob("run-*.wandb")
    assert log.stat().st_size > 0
    assert "exitcode: 0" in (runs[0] / "logs" / "debug.log").read_text()
