"""Programs: each parses absl flags and calls library functions (`python -m videomae_jax.tools.NAME --help`);
docs/architecture.md lists them. The trainer is `python -m videomae_jax.main`."""
