"""Video data: shard records and folders (shards), the synthetic demo set (demo),
decoding (decoding, encoding), temporal sampling (temporal), host spatial ops (transforms), Kinetics label sets
(label_maps), TFDS sources (tfds_source) and the grain input pipeline (pipeline: `pipeline.make_dataset(config,
mode=...)`). Nothing is imported here: grain workers that only decode need none of the rest."""
