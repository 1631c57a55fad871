"""Backtesting: pure engines, strategies and metrics (no ORM). Shares the paper fill model."""
