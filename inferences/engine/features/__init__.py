"""What runs beside the sampler: ControlNet and its preprocessors, upscalers, background removal."""
