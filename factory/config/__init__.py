"""Typed configuration: the stage models that every layer shares (prompts, teacher, sampling, generate, distill,
the eval's benchmark), and how YAML and `--set` become a validated, fingerprinted config. The settings of each
filter live beside the filter (factory/filters), so the configs that hold them (filter, eval, grpo) sit above."""
