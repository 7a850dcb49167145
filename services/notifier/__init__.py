"""The notifier service: the worker of the `notifications` queue (moked.notify.dispatch)."""
