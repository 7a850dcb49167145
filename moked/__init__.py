"""Moked: call intake for businesses on Twilio. The core shared by every service."""
