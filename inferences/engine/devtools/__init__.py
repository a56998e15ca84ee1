"""Test and bench tooling: tiny random-weight models and the builders that write them as files users upload."""
