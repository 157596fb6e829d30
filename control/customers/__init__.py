"""Customers (seed 003 §5.3, §5.9.1): records with configurable fields, follow-up status,
sources, tags, companies and opportunities (P-8); customer pools with claim caps that hold
across server processes (P-1 … P-4); prospecting seats (P-5 … P-7). On the store's SCRM
tables; ``control.app`` mounts the routes."""
