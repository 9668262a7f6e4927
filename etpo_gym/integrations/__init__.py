"""Adapters to training libraries; each imports its library lazily, inside its functions."""
