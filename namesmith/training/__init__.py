"""Training a model: the pipeline, the gradient trainer, distillation, several processes, checkpoints."""
