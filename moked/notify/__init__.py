"""Notifications: from "a voicemail is ready" to "a person knows".

- `rules`: who hears about a business's calls (CLI and CRM manage them).
- `alerts`: what an alert says, built once from a call; `payload` is its one serializer.
- `planner`: when a call's alerts are due, and the delivery rows it creates (once).
- `deliveries`: the one owner of a delivery's status.
- `quiet_hours`: whether a moment is inside a rule's quiet hours, and when they end.
- `channels`: email (SMTP), sms/whatsapp (Twilio Messaging), webhook (Standard Webhooks).
- `dispatch`: the notifications queue's jobs: send one delivery, release a digest.
"""
