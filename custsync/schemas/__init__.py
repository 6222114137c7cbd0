"""marshmallow schemas: the event envelope and one schema per target's changes."""
