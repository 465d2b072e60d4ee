"""Synthetic shopper traffic: POS and web shoppers, plus malformed events on request."""
