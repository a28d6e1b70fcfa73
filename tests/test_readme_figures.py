"""The README's results are the generated pages' figures: every number of its results table and of the sentence on
MEG-SplitControl-v0's live scores is checked against docs/results/leaderboard.json, docs/results/split_control.json and
docs/results/split_table_validation.json (the data the pages are rendered from). Rebuild a page, and this test says which
README figure to update."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DOCS = ROOT / "docs" / "results"
SHIPPED_CACHE = "3c8edbabc393"  # the leaderboard tables the README quotes: default settings, the shipped cache
# the README's names -> the leaderboard's
NAMES = {
    "static power": "static",
    "capacity water-filling": "capacity-water-filling",
    "MMSE water-filling": "mmse-water-filling",
    "PPO, 1000k steps": "ppo (1000k)",
    "IPPO, 100k steps": "ippo (100k)",
    "PPO-Lagrangian, 600k steps": "ppo-lagrangian",
    "FOCOPS (tuned, 4 trials), 600k steps": "focops (tuned, 4 trials)",
}


def results_rows() -> list[tuple[str, str, str, str, str]]:
    """(environment, policy, runs, PSNR IQM, score) of each row of the README's results table."""
    section = README.split("## Results", 1)[1].split("\n## ", 1)[0]
    rows, env = [], None
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 6 or cells[0] == "environment" or set(cells[0]) <= {"-"} and cells[0]:
            continue
        env = cells[0].strip("`") or env
        rows.append((env, cells[1], cells[3], cells[4], cells[5]))
    return rows


def leaderboard_row(env_id: str, policy: str) -> dict:
    tables = json.loads((DOCS / "leaderboard.json").read_text())["tables"]
    (table,) = [t for t in tables if t["env_id"] == env_id and t["label"] == "default" and
                t["cache_sha256"].startswith(SHIPPED_CACHE)]  # fmt: skip
    (row,) = [r for r in table["rows"] if r["policy"] == NAMES.get(policy, policy)]
    return row


def test_the_readme_results_table_quotes_the_leaderboard():
    rows = results_rows()
    assert len(rows) >= 10 and {r[0] for r in rows} == {
        "MEG-PowerControl-v0",
        "MEG-MultiCell-v0",
        "MEG-SplitControl-v0",
    }
    for env_id, policy, runs, psnr, score in rows:
        row = leaderboard_row(env_id, policy)
        where = f"README results, {env_id} / {policy}"
        assert int(runs) == row["runs"], where
        assert psnr == f"{row['psnr_iqm'][0]:.2f}", (
            f"{where}: PSNR IQM {psnr}, the leaderboard says {row['psnr_iqm'][0]:.2f}"
        )
        point, *interval = re.findall(r"-?\d+\.\d+", score)
        assert point == f"{row['score'][0]:.2f}", f"{where}: score {point}, the leaderboard says {row['score'][0]:.2f}"
        if interval:
            assert interval == [f"{v:.2f}" for v in row["score"][1:]], f"{where}: score interval"


def test_the_readme_live_scores_and_bound_quote_their_pages():
    bound = json.loads((DOCS / "split_control.json").read_text())["planner_bound"]["bound"]
    assert f"dual bound is {bound:.2f} dB" in " ".join(README.split())
    policies = json.loads((DOCS / "split_table_validation.json").read_text())["ranking"]["policies"]
    text = " ".join(README.split())
    quoted = re.findall(r"(planner|PPO-Lagrangian|best-fixed) (\d+\.\d+) vs (\d+\.\d+)", text)
    assert len(quoted) == 3
    for name, live, table in quoted:
        keys = [k for k in policies["live"] if k.rsplit(" (", 1)[0] == name.lower()]
        assert keys, name
        assert live == f"{np.mean([policies['live'][k]['psnr'][0] for k in keys]):.2f}", name
        assert table == f"{np.mean([policies['table'][k]['psnr'][0] for k in keys]):.2f}", name
    largest = max(abs(policies["table"][k]["psnr"][0] - policies["live"][k]["psnr"][0]) for k in policies["live"])
    assert re.search(r"largest difference of any policy (\d+\.\d+) dB", text).group(1) == f"{largest:.2f}"


@pytest.mark.parametrize("policy", ["planner", "nonexistent"])
def test_the_check_fails_for_a_policy_the_leaderboard_lacks(policy):
    if policy == "planner":
        assert leaderboard_row("MEG-SplitControl-v0", policy)["runs"] == 1
    else:
        with pytest.raises(ValueError):
            leaderboard_row("MEG-SplitControl-v0", policy)


def test_the_readme_names_the_best_constrained_learner_of_its_page():
    data = json.loads((DOCS / "constrained_learners.json").read_text())
    text = " ".join(README.split())
    named = re.search(r"best constrained learner[^:]*: ([\w-]+(?: \(tuned, \d+ trials\))?)", text, re.IGNORECASE)
    assert named, "the README's results name no best constrained learner"
    assert named.group(1).lower() == data["best_learner"], (named.group(1), data["best_learner"])
    (best,) = [e for e in data["entries"] if e["policy"] == data["best_learner"]]
    quoted = re.search(r"live score (\d+\.\d+) \[(\d+\.\d+), (\d+\.\d+)\]", text[named.end() :]).groups()
    assert list(quoted) == [f"{v:.2f}" for v in best["live_score"]], (quoted, best["live_score"])


def test_the_readme_protocol_figures_are_the_code_constants():
    from meg_gym import evaluation
    from meg_gym.config import SplitControlConfig

    text = " ".join(README.split())
    assert f"{evaluation.DEFAULT_EVAL_EPISODES:,} test-prompt episodes" in text
    assert f"episode j seeded with {evaluation.EVAL_SEED:,} + j" in text
    sessions = json.loads((DOCS / "split_table_validation.json").read_text())["ranking"]["sessions"]
    assert f"checked live on {sessions} sessions" in text
    limits = SplitControlConfig().cost_limits
    assert (
        f"UE energy (J; limit {limits['ue_energy']:g} per session), deadline misses (limit {limits['deadline_miss']:g})"
        in text
    )
