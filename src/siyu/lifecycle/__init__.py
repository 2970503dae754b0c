"""Lifecycle stages, RFM scores and predicted value (BG/NBD + Gamma-Gamma)."""
