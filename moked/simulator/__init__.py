"""Plays Twilio's part: calls, callbacks and recording media, as Twilio sends them."""
