"""`python -m kcaption ...`: the `kcaption` command, where the script is not on PATH (e.g. a notebook's `!`)."""

from kcaption.cli import entry

if __name__ == "__main__":  # not when a tool imports every module of the package
    entry()
