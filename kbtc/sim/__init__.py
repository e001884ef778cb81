"""A local exchange simulator speaking the Kalshi and Coinbase protocols on 127.0.0.1.

It implements the venues as documented (`shared/reference/`), never our clients' expectations: nothing here
imports `kbtc.venues`.
"""
