"""Compress plugins: scene codecs, INR image / video codecs, coding for machines (shared RD harness in rd.py)."""
