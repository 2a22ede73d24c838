"""The project's own exceptions: what a user can fix, said in words that tell them how."""


class ConfigError(ValueError):
  """A configuration that cannot work; the message names the key to change and the value to use."""


class NonFiniteLossError(FloatingPointError):
  """Training produced a NaN or inf loss; the run stopped without saving that state."""
