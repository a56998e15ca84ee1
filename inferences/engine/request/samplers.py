"""A1111's sampler names and schedule types, as A1111 1.9+ defines them (modules/sd_samplers_kdiffusion.py,
modules/sd_schedulers.py).

Every k-diffusion name runs k-diffusion's own `sample_*` function over the model's own sigmas (ksampling.py), as
A1111 does; DDIM, PLMS, UniPC and LCM run A1111's own on the same loop (timesteps.py). The table is plain data so the web process can
validate a payload's `sampler_name` and `scheduler` without importing torch. An unknown name is a failed job with
the list of known ones, never a silent substitute.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import EngineError


@dataclass(frozen=True)
class Sampler:
    """One A1111 sampler. `function` names k-diffusion's `sample_*` or A1111's own (ksampling.py, timesteps.py)."""

    function: str
    schedule: str = "uniform"  # what the schedule type "Automatic" means for it (A1111's `scheduler` option)
    discard_penultimate: bool = False  # A1111's discard_next_to_last_sigma: one more step, its next-to-last dropped
    brownian: bool = False  # noise from a Brownian tree seeded with the batch's seeds (DPM++ SDE family)
    second_order: bool = False  # two model evaluations a step: A1111 schedules prompt editing over twice the steps
    uses_ensd: bool = False  # A1111's `uses_ensd` option: its infotext names ENSD only for these
    arguments: dict[str, Any] = field(default_factory=dict)

    @property
    def sigma_based(self) -> bool:
        """What A1111 runs as a KDiffusionSampler (over sigmas, with schedule types); not its timestep samplers."""
        return not self.timesteps

    @property
    def timesteps(self) -> bool:
        """A1111's samplers over timesteps (DDIM, PLMS, UniPC), whose eta is `Eta DDIM` (default 0)."""
        return self.function in ("ddim", "plms", "unipc")

    @property
    def takes_eta(self) -> bool:
        """Whether `eta` changes what it does (the noise an ancestral or SDE step adds; DDIM's own eta)."""
        return self.function == "ddim" or any(
            part in self.function for part in ("ancestral", "sde", "dpm_fast", "dpm_adaptive")
        )


SAMPLERS: dict[str, Sampler] = {
    "Euler a": Sampler("sample_euler_ancestral", uses_ensd=True),
    "Euler": Sampler("sample_euler"),
    "LMS": Sampler("sample_lms"),
    "Heun": Sampler("sample_heun", second_order=True),
    "DPM2": Sampler("sample_dpm_2", "karras", discard_penultimate=True, second_order=True),
    "DPM2 a": Sampler("sample_dpm_2_ancestral", "karras", discard_penultimate=True, second_order=True, uses_ensd=True),
    "DPM++ 2S a": Sampler("sample_dpmpp_2s_ancestral", "karras", second_order=True, uses_ensd=True),
    "DPM++ 2M": Sampler("sample_dpmpp_2m", "karras"),
    "DPM++ SDE": Sampler("sample_dpmpp_sde", "karras", brownian=True, second_order=True),
    "DPM++ 2M SDE": Sampler("sample_dpmpp_2m_sde", "exponential", brownian=True),
    "DPM++ 2M SDE Heun": Sampler(
        "sample_dpmpp_2m_sde", "exponential", brownian=True, arguments={"solver_type": "heun"}
    ),
    "DPM++ 3M SDE": Sampler("sample_dpmpp_3m_sde", "exponential", discard_penultimate=True, brownian=True),
    "DPM fast": Sampler("sample_dpm_fast", uses_ensd=True),
    "DPM adaptive": Sampler("sample_dpm_adaptive", uses_ensd=True),
    "Restart": Sampler("sample_restart", "karras", second_order=True),  # A1111's own, on k-diffusion (ksampling.py)
    # A1111's own (sampling/timesteps.py): DDIM, PLMS and UniPC over its timesteps, LCM over its LCM denoiser
    "DDIM": Sampler("ddim"),
    "PLMS": Sampler("plms"),
    "UniPC": Sampler("unipc"),
    "LCM": Sampler("sample_lcm"),
}

# Schedule types by A1111's label (the payload's `scheduler`) -> the engine's key.
SCHEDULES = {
    "automatic": None,
    "uniform": "uniform",
    "karras": "karras",
    "exponential": "exponential",
    "polyexponential": "polyexponential",
    "sgm uniform": "sgm_uniform",
    "sgm_uniform": "sgm_uniform",
    "sgmuniform": "sgm_uniform",
    "kl optimal": "kl_optimal",
    "kl_optimal": "kl_optimal",
    "align your steps": "align_your_steps",
    "align_your_steps": "align_your_steps",
    "simple": "simple",
    "normal": "normal",
    "ddim": "ddim",
    "beta": "beta",
    "": None,
}
SCHEDULE_LABELS = {
    "uniform": "Uniform",
    "karras": "Karras",
    "exponential": "Exponential",
    "polyexponential": "Polyexponential",
    "sgm_uniform": "SGM Uniform",
    "kl_optimal": "KL Optimal",
    "align_your_steps": "Align Your Steps",
    "simple": "Simple",
    "normal": "Normal",
    "ddim": "DDIM",
    "beta": "Beta",
}

# A1111's schedule types in its order (modules/sd_schedulers.py) with every spelling a sampler name may end in: its
# label, its name and its aliases ("DPM++ 2M Karras", "Euler a SGMUniform").
SUFFIXES: tuple[tuple[str | None, tuple[str, ...]], ...] = (
    (None, ("Automatic", "automatic")),
    ("uniform", ("Uniform", "uniform")),
    ("karras", ("Karras", "karras")),
    ("exponential", ("Exponential", "exponential")),
    ("polyexponential", ("Polyexponential", "polyexponential")),
    ("sgm_uniform", ("SGM Uniform", "sgm_uniform", "SGMUniform")),
    ("kl_optimal", ("KL Optimal", "kl_optimal")),
    ("align_your_steps", ("Align Your Steps", "align_your_steps")),
    ("simple", ("Simple", "simple")),
    ("normal", ("Normal", "normal")),
    ("ddim", ("DDIM", "ddim")),
    ("beta", ("Beta", "beta")),
)
# The names before A1111 1.9, which carried the schedule: still sent by older clients, and offered by Generate.
LEGACY_NAMES = (
    "LMS Karras", "DPM2 Karras", "DPM2 a Karras", "DPM++ 2S a Karras", "DPM++ 2M Karras", "DPM++ SDE Karras",
    "DPM++ 2M SDE Karras", "DPM++ 2M SDE Exponential", "DPM++ 2M SDE Heun Karras", "DPM++ 2M SDE Heun Exponential",
    "DPM++ 3M SDE Karras", "DPM++ 3M SDE Exponential",
)  # fmt: skip
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
    "k_dpmpp_2s_a": "DPM++ 2S a",
    "k_dpmpp_2m": "DPM++ 2M",
    "k_dpmpp_sde": "DPM++ SDE",
    "k_dpmpp_2m_sde": "DPM++ 2M SDE",
    "k_dpmpp_3m_sde": "DPM++ 3M SDE",
    "k_dpm_fast": "DPM fast",
    "k_dpm_ad": "DPM adaptive",
    "restart": "Restart",
    "ddim": "DDIM",
    "plms": "PLMS",
    "unipc": "UniPC",
    "lcm": "LCM",
}
NAMES = (*SAMPLERS, *LEGACY_NAMES)  # what a payload may send (and the Generate page offers)


def resolve_sampler(name: str, schedule: str | None = None) -> tuple[str, str | None]:
    """The canonical sampler name and the schedule the payload asked for (None: Automatic, the sampler's own), as
    A1111's sd_samplers.get_sampler_and_scheduler (1.9+) reads them: a name may end in a schedule type ("Euler a
    Karras", "DPM++ 2M Exponential"), which wins over the `scheduler` key; a schedule type that is the sampler's own
    is that schedule all the same (issue 30.10). Where A1111 silently runs its default sampler for a name it does
    not know, this refuses it, naming the known ones (docs/api.md)."""
    chosen = None
    if schedule is not None:
        asked = schedule.strip().lower()
        if asked not in SCHEDULES:
            labels = ", ".join(["Automatic", *SCHEDULE_LABELS.values()])
            raise EngineError(f"scheduler {schedule!r} is not supported; use one of: {labels}")
        chosen = SCHEDULES[asked]
    base = name
    for suffix_schedule, spellings in SUFFIXES:
        for spelling in spellings:
            if base.endswith(" " + spelling):
                chosen, base = suffix_schedule, base[: -(len(spelling) + 1)]
                break
    by_case = {known.lower(): known for known in SAMPLERS}
    canonical = by_case.get(base.lower()) or ALIASES.get(base.lower())
    if canonical is None:
        raise EngineError(f"sampler_name {name!r} is not supported; use one of: {', '.join(NAMES)}")
    return canonical, chosen


def effective_schedule(name: str, schedule: str | None) -> str:
    """The sigma schedule a k-diffusion sampler runs: the asked one, else the sampler's own."""
    return schedule or SAMPLERS[name].schedule


def label(name: str, schedule: str | None) -> tuple[str, str | None]:
    """What infotexts say: the sampler, and A1111's "Schedule type": the label of the schedule a k-diffusion sampler
    runs (its own for "Automatic", where it has one: DPM++ 2M's Karras), else the payload's (`p.scheduler`), which is
    "Automatic" when none was asked for (sd_samplers_kdiffusion.py get_sigmas, processing.py create_infotext)."""
    sampler = SAMPLERS[name]
    if schedule is None and sampler.schedule == "uniform":
        return name, "Automatic"
    return name, SCHEDULE_LABELS[effective_schedule(name, schedule)]


def sampler_and_scheduler(name: str | None, schedule: str | None) -> tuple[str, str]:
    """A1111's sd_samplers.get_sampler_and_scheduler as its infotext paste calls it: the sampler's name and the
    schedule type's label, a suffix in the name winning, "Automatic" where the schedule is the sampler's own. Where
    A1111 puts its default in place of an unknown name, this refuses it (the project's rule: resolve_sampler)."""
    try:
        canonical, chosen = resolve_sampler(name or "DPM++ 2M", schedule if schedule in SCHEDULES_BY_LABEL else None)
    except EngineError as exc:
        raise EngineError(f"infotext: {exc}") from exc
    own = SAMPLERS[canonical].schedule
    if chosen is None or (own != "uniform" and chosen == own):
        return canonical, "Automatic"
    return canonical, SCHEDULE_LABELS[chosen]


# A1111's schedulers_map reads a schedule type by its label or its name; anything else is "Automatic" there
SCHEDULES_BY_LABEL = {spelling for _, spellings in SUFFIXES for spelling in spellings[:2]}
