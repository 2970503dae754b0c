"""Outbound WeChat, WeCom and Mini Program API clients: one module per platform over one base."""
