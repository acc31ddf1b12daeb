"""The config pipeline: the declared schema of every setting, validation, command-line
overrides, name resolution and the pre-run checks. parse_config.ConfigParser ties them together."""
