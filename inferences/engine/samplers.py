"""A1111 sampler names → diffusers schedulers (the mapping diffusers' docs give for A1111 users).

The table is plain data so the web process can validate a payload's `sampler_name` without importing diffusers.
An unknown name is a failed job with the list of known ones, never a silent substitute.
"""

from __future__ import annotations

from typing import Any

from .errors import EngineError

# name → (diffusers scheduler class, constructor overrides, uses Karras sigmas)
SAMPLERS: dict[str, tuple[str, dict[str, Any], bool]] = {
    "Euler a": ("EulerAncestralDiscreteScheduler", {}, False),
    "Euler": ("EulerDiscreteScheduler", {}, False),
    "LMS": ("LMSDiscreteScheduler", {}, False),
    "LMS Karras": ("LMSDiscreteScheduler", {}, True),
    "Heun": ("HeunDiscreteScheduler", {}, False),
    "DPM2": ("KDPM2DiscreteScheduler", {}, False),
    "DPM2 Karras": ("KDPM2DiscreteScheduler", {}, True),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", {}, False),
    "DPM2 a Karras": ("KDPM2AncestralDiscreteScheduler", {}, True),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}, False),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}, True),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}, False),
    "DPM++ 2M SDE Karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}, True),
    "DPM++ SDE": ("DPMSolverSinglestepScheduler", {}, False),
    "DPM++ SDE Karras": ("DPMSolverSinglestepScheduler", {}, True),
    "DDIM": ("DDIMScheduler", {}, False),
    "PLMS": ("PNDMScheduler", {"skip_prk_steps": True}, False),
    "UniPC": ("UniPCMultistepScheduler", {}, False),
    "LCM": ("LCMScheduler", {}, False),
}
# Names older clients and A1111's own aliases use.
ALIASES = {
    "k_euler_a": "Euler a",
    "k_euler_ancestral": "Euler a",
    "euler_ancestral": "Euler a",
    "k_euler": "Euler",
    "k_lms": "LMS",
    "k_heun": "Heun",
    "k_dpm_2": "DPM2",
    "k_dpm_2_a": "DPM2 a",
    "k_dpmpp_2m": "DPM++ 2M",
    "k_dpmpp_sde": "DPM++ SDE",
    "ddim": "DDIM",
    "plms": "PLMS",
    "unipc": "UniPC",
    "lcm": "LCM",
}
# A1111 >= 1.9 sends the sigma schedule separately ("scheduler": "Karras").
SCHEDULE_TYPES = {"automatic": None, "karras": True, "uniform": False, "": None}


def resolve_sampler(name: str, schedule: str | None = None) -> tuple[str, bool | None]:
    """The canonical sampler name and whether the payload asked for Karras sigmas (None: the name decides)."""
    canonical = name if name in SAMPLERS else ALIASES.get(name.lower())
    if canonical is None:
        by_case = {known.lower(): known for known in SAMPLERS}
        canonical = by_case.get(name.lower())
    if canonical is None:
        raise EngineError(f"sampler_name {name!r} is not supported; use one of: {', '.join(SAMPLERS)}")
    karras: bool | None = None
    if schedule is not None:
        key = schedule.lower()
        if key not in SCHEDULE_TYPES:
            raise EngineError(f"scheduler {schedule!r} is not supported; use Automatic, Karras or Uniform")
        karras = SCHEDULE_TYPES[key]
    return canonical, karras


def make_scheduler(name: str, karras: bool | None, base_config: Any) -> Any:
    """A fresh scheduler for one job (schedulers keep per-run state), built on the model's own training config."""
    import diffusers

    class_name, overrides, named_karras = SAMPLERS[name]
    use_karras = named_karras if karras is None else karras
    scheduler_class = getattr(diffusers, class_name)
    config = dict(base_config)
    for key in ("use_karras_sigmas", "algorithm_type", "solver_order", "skip_prk_steps"):
        config.pop(key, None)
    if use_karras and "use_karras_sigmas" in scheduler_class.__init__.__code__.co_varnames:
        overrides = {**overrides, "use_karras_sigmas": True}
    return scheduler_class.from_config(config, **overrides)


def label(name: str, karras: bool | None) -> tuple[str, str | None]:
    """What infotexts say: the sampler, and A1111's "Schedule type" when it differs from the name's default."""
    named_karras = SAMPLERS[name][2]
    if karras is None or karras == named_karras:
        return name, None
    return name, "Karras" if karras else "Uniform"
