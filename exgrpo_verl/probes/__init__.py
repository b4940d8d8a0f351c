"""Explanatory Inversion (stage 1): rules, teacher client, filters, writers and the pipeline."""
