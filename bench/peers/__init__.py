"""Peer servers for bench/compare.py: each module here runs inside that peer's own venv."""
