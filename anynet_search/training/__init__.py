"""Training: data sets, augmentation, the trainer, and the engine that keeps several trials in flight per device."""
