"""Simulated exchanges (Binance spot and USDⓈ-M futures, Bybit V5, KuCoin, Coinbase Advanced
Trade) that speak each venue's real protocol on 127.0.0.1, so the real ccxt client runs
against them. Django-free: tests, the chaos run, benchmarks and a local sandbox import it;
the product packages never do. Every behaviour cites the venue's official documentation.
"""
