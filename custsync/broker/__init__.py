"""Everything that knows the broker's wire format: what a valid task message is, and what
becomes of one that is not."""
