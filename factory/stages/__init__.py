"""The stages, one module each (what a stage module holds: base.py). They load torch and the model engines only
when they run, so the pipeline can import them all to plan."""
