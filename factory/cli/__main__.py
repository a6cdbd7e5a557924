"""`python -m factory.cli`: what the `factory` command runs (the pipeline launches its stages' processes so)."""

from . import entry

if __name__ == "__main__":
    entry()
