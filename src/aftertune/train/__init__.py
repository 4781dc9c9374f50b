"""Controlled fine-tuning experiments: spec, training with TRL + peft, tracking callback, gates, sweeps."""
