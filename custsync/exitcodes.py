"""Named exit codes for every custsync command (STYLE §9)."""

OK = 0
FAILURE = 1  # the command ran and found a problem (unhealthy, nothing matched, aborted)
INVALID_INPUT = 2  # some input lines or arguments were invalid; valid ones were processed
CONFIG_ERROR = 3  # a setting is missing or invalid
UNAVAILABLE = 4  # Redis, the broker or a partner could not be reached
INTERRUPTED = 130  # stopped by Ctrl-C
