"""Data: the shard sample format, augmentation, synthetic data, converters and the mixed DataModule."""
