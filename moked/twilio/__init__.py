"""What Moked knows about Twilio: signatures, TwiML, the REST API."""
