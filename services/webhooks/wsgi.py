"""gunicorn entry point: `gunicorn -c services/webhooks/gunicorn.conf.py webhooks.wsgi:app`."""

from webhooks.app import create_app

app = create_app()
