"""The HTTP front door (``custsync serve``): webhook ingest, health and metrics, one WSGI app
(Flask + flask-smorest) run by gunicorn. Stateless: Redis is the only shared state."""
