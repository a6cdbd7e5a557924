"""What leaves the run directory: the dataset card (template, stats, plots, lineage) and the Hub upload."""
