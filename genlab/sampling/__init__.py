"""Generative processes kept apart from the networks: noise schedules and diffusion samplers."""
