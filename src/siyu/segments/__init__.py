"""Segments: the rule language, its compiler to Ibis, and memberships kept up to date."""
