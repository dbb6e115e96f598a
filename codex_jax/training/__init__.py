"""Training: the trainer (pretraining and fine-tuning are one loop), sharding, checkpoints,
multi-host helpers and FLOP accounting."""
