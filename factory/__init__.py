"""r1-factory: the DeepSeek-R1 distillation recipe as a tool."""

__version__ = "0.1.0"
