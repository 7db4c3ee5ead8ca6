"""hwsim: the hardware side (voltage -> bit error rate, AccelForge energy) and the `hwsim` CLI."""
__version__ = "0.1.0"
