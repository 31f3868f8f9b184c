"""Anomaly maps: Reverse Distillation (RD4AD) training, scoring, metrics, data and its plugin."""
