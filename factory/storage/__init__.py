"""What is kept on disk: the record schema, Parquet shards, the sample cache, the run directory, the bundled models and content hashes."""
