"""Dataset audit: what a fine-tuning set holds and is likely to teach, before paying for the training."""
