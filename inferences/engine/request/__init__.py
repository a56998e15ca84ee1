"""What a job asks for, read without torch: payload parsing, limits, model names, batch key, memory and time estimates.

The web process imports this package at `start` to check a request and plan its job; nothing in it imports torch
(tests/test_layers.py holds that).
"""
