"""Evaluate any policy of any MEG environment under the held-out protocol and write eval.json.

The same as ``meg-gym evaluate`` (meg_gym/cli/evaluate.py, whose docstring lists the forms of --policy):

    python scripts/evaluate.py --policy static
    python scripts/evaluate.py --policy runs/NAME --env-id MEG-SplitControl-v0
"""

from meg_gym.cli.evaluate import cli, main

if __name__ == "__main__":
    main(cli())
