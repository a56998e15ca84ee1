"""A1111's denoising: the k-diffusion loop with its samplers, schedules and noise, and prompt conditioning."""
