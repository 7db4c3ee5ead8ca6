"""One module per `hwsim` subcommand; each defines register(subparsers)."""
