"""Training one sampled network: data sets as device tensors, batched augmentation, the short-schedule
trainer and the memory estimate that refuses a config its device cannot hold."""
