"""Making names: plain and exact sampling, constraints, guidance, novelty and whole-name calibration."""
