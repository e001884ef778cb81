"""Venue clients (Kalshi, Coinbase): auth, REST, WebSocket and parsing. No database code lives here."""
