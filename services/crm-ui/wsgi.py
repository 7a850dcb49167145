"""gunicorn entry point: `gunicorn -c services/crm-ui/gunicorn.conf.py crm_ui.wsgi:app`."""

from crm_ui.app import create_app

app = create_app()
