"""Adapters: one module per technology behind the domain ports (stores, Revel, SendGrid, TripleSeat)."""
