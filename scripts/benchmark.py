"""Speed of the environments against their peers and compute floors; writes docs/results/benchmarks*.md (+ .json).

The same as ``meg-gym benchmark`` (meg_gym/cli/benchmark.py, whose docstring says what is measured):

    python scripts/benchmark.py                          # MEG-PowerControl-v0 -> docs/results/benchmarks.md
    python scripts/benchmark.py --split-control-only     # MEG-SplitControl-v0 -> docs/results/benchmarks_split_control.md
"""

import tyro

from meg_gym.cli.benchmark import Args, main

if __name__ == "__main__":
    main(tyro.cli(Args))
