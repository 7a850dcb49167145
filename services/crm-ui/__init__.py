"""The CRM staff use every day: inbox, call pages, greetings and numbers, and an API."""
