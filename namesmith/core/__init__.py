"""The lowest layer: errors, atomic files, the vocabulary, letter case, progress, memory estimates, options."""
