"""Training one sampled network: data sets as device tensors, batched augmentation, the step and evaluation
programs (eager or CUDA graphs), the trainer, the engine that keeps several trials in flight on one device,
and the memory estimate that refuses a config its device cannot hold."""
