"""The webhooks service: the Flask app Twilio calls, run by gunicorn behind nginx."""
