"""The inference engine: A1111-style payloads and local model files in, PNGs and A1111's result JSON out.

Everything that touches torch or diffusers lives in this package, and it imports no Django app, so it can be run,
tested and benchmarked on its own (`python manage.py txt2img`, `bench/engine_overhead.py`). Importing the package
is cheap: torch is imported by the modules that run models, on first use.
"""

import os

# Nothing in the engine may reach for the Hugging Face Hub: a missing config or model is a clear error, never a
# download. These must be set before huggingface_hub is first imported, which is why they live here.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
