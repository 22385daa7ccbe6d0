"""Training stage: the lambda-DPO trainer built on the HF Trainer (installed as lwdpo_edge.train)."""
