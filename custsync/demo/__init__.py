"""``custsync demo``: the whole loop on one machine, and the stream it publishes."""
