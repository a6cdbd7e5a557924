"""Typed configuration: the stage models, the teacher/sampling/filter/GRPO sections, and how YAML and `--set` become a validated, fingerprinted config."""
