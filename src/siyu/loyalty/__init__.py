"""Membership and loyalty: members, a points ledger that cannot be cheated, rules, tiers, rewards."""
